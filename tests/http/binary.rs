//! The real `myapi-web` binary: start-up errors, logging, graceful shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Backend, TEST_TOKEN_KEY, TestDb};

pub(crate) fn server(db: &TestDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_myapi-web"));
    command
        .current_dir(db.dir.path())
        .env("MYAPI_DATABASE__DSN", &db.dsn)
        .env("MYAPI_SERVER__PORT", "0")
        .env("MYAPI_SERVER__WORKERS", "1")
        .env("MYAPI_TOKEN_KEY", TEST_TOKEN_KEY)
        .env_remove("MYAPI_TOKEN_KEYS")
        .env("RUST_LOG", "debug")
        .env("MYAPI_SERVER__SHUTDOWN_TIMEOUT_SECS", "2")
        .env("MYAPI_SERVER__DRAIN_SECS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// [`server`] with a database it cannot reach: a setting refused at start stops it (exit 2)
/// before any connection, while one wrongly accepted fails within a second (exit 1)
/// instead of serving forever.
pub(crate) fn server_without_database(db: &TestDb) -> Command {
    let mut command = server(db);
    command
        .env("MYAPI_DATABASE__DSN", "postgres://127.0.0.1:1/none")
        .env("MYAPI_DATABASE__CONNECT_TIMEOUT_SECS", "1");
    command
}

/// Runs `command`, expecting it to fail with `expected_code` and one error line containing
/// `needle`; returns stderr.
pub(crate) fn one_line_failure(command: &mut Command, expected_code: i32, needle: &str) -> String {
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(expected_code), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("myapi-web:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(needle), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    stderr.into_owned()
}

#[test]
fn bad_settings_fail_with_one_line() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    one_line_failure(
        server(&db).env("MYAPI_SERVER__PORT", "abc"),
        2,
        "server.port",
    );
    one_line_failure(
        server(&db).env("MYAPI_TOKEN_KEY", "too-short"),
        2,
        "token_key",
    );
    one_line_failure(
        server_without_database(&db).env("MYAPI_SERVER__CLIENT_IP_HEADER", "x-real-ip"),
        2,
        "server.client_ip_header",
    );
    one_line_failure(
        server(&db)
            .env(
                "MYAPI_DATABASE__DSN",
                "postgres://app:hunter2@127.0.0.1:1/none",
            )
            .env("MYAPI_DATABASE__CONNECT_TIMEOUT_SECS", "1"),
        1,
        "database unavailable",
    );
    for (dsn, needle) in [
        ("mysql://x@y/z", "unsupported scheme"),
        ("host=db nonsense=1", "database.dsn"),
    ] {
        one_line_failure(server(&db).env("MYAPI_DATABASE__DSN", dsn), 2, needle);
    }
}

/// The signing keys of `deploy/myapi.env.example`, as an instance copied from it would
/// read them.
fn example_token_keys() -> String {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/myapi.env.example"),
    )
    .unwrap();
    example
        .lines()
        .find_map(|line| line.strip_prefix("MYAPI_TOKEN_KEYS="))
        .unwrap()
        .trim_matches('\'')
        .to_owned()
}

#[test]
fn bad_token_keys_fail_with_one_line_naming_the_variable() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let (key, other) = (
        "k-0123456789abcdefghijklmnopqrstuv",
        "o-0123456789abcdefghijklmnopqrstuv",
    );
    for (keys, message) in [
        (
            format!("old:{key},new:{other},old:{other}"),
            "entry 3 repeats the kid of entry 1",
        ),
        (format!("old:{key},:{other}"), "entry 2 has an empty kid"),
        (
            format!("old:{key},new:short"),
            "entry 2: the key must be at least 32 bytes",
        ),
        (
            format!("old:{key},new:{}", "k".repeat(40)),
            "entry 2: the key is too predictable",
        ),
        (
            example_token_keys(),
            "entry 1: the key is the placeholder of deploy/myapi.env.example",
        ),
        (key.to_owned(), "entry 1 is not kid:key"),
        (" , ".to_owned(), "lists no kid:key entry"),
    ] {
        let stderr = one_line_failure(
            server_without_database(&db)
                .env_remove("MYAPI_TOKEN_KEY")
                .env("MYAPI_TOKEN_KEYS", keys),
            2,
            &format!("token_keys (MYAPI_TOKEN_KEYS): {message}"),
        );
        assert!(
            !stderr.contains("0123456789abcdef")
                && !stderr.contains("kkkk")
                && !stderr.contains("CHANGE-ME"),
            "{stderr}"
        );
    }
    let stderr = one_line_failure(
        server(&db).env("MYAPI_TOKEN_KEYS", format!("new:{key}")),
        2,
        "token_keys (MYAPI_TOKEN_KEYS): cannot be combined with token_key (MYAPI_TOKEN_KEY)",
    );
    assert!(
        !stderr.contains(TEST_TOKEN_KEY) && !stderr.contains(key),
        "{stderr}"
    );
    let placeholder = example_token_keys();
    let (_, placeholder) = placeholder.split_once(':').unwrap();
    for (single, message) in [
        (placeholder.to_owned(), "is the placeholder"),
        ("k".repeat(40), "is too predictable"),
    ] {
        let stderr = one_line_failure(
            server_without_database(&db).env("MYAPI_TOKEN_KEY", &single),
            2,
            &format!("token_key (MYAPI_TOKEN_KEY): {message}"),
        );
        assert!(!stderr.contains(&single), "{stderr}");
    }
}

const JWKS_VERIFIERS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/clients/jwks_verifiers.py"
);

/// A fresh start with a key file from `myapi-cli generate-key` (the same function) issues
/// EdDSA tokens that PyJWT and Authlib verify from the JWK Set alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_signs_tokens_that_jwks_verifiers_accept() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let path = db.dir.path().join("token.pem");
    let kid = myapi_services::auth::keys::write_new_key(&path).unwrap();
    // The issuer is the server's address, as in production: reserve a port for both.
    let port = crate::oauth_clients::reserved_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut command = server(&db);
    command
        .env_remove("MYAPI_TOKEN_KEY")
        .env("MYAPI_TOKEN_KEY_FILES", &path)
        .env("MYAPI_SERVER__PORT", port.to_string())
        .env("MYAPI_AUTH__ISSUER", &base);
    let (mut child, _, _log) = start_command(command);
    create_user(&db, "keys@example.com", "Keys-Passw0rd-1").await;
    let form = [
        ("username", "keys@example.com"),
        ("password", "Keys-Passw0rd-1"),
    ];
    let token = access_token(&reqwest::Client::new(), &base, &form).await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(header.kid, Some(kid));

    if crate::oauth_clients::python_has("jwt, authlib, cryptography", "pyjwt authlib") {
        crate::oauth_clients::run_python(JWKS_VERIFIERS, &[&base, &token]).await;
    }
    assert!(terminate(&mut child).success());
}

#[test]
fn bad_key_files_fail_with_one_line_naming_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let path = db.dir.path().join("token.pem");
    myapi_services::auth::keys::write_new_key(&path).unwrap();
    let not_a_key = db.dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, TEST_TOKEN_KEY).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let display = |path: &std::path::Path| path.display().to_string();
    for (files, message) in [
        (
            display(&path),
            format!(
                "entry 1 ({}) is a private key other users can access or its group can \
                 change (mode 0644)",
                display(&path)
            ),
        ),
        (
            display(&not_a_key),
            format!("entry 1 ({}) holds no Ed25519 key", display(&not_a_key)),
        ),
        // A path naming no file may be a secret in the wrong variable: it is not quoted.
        (
            format!("2025-01:{TEST_TOKEN_KEY}"),
            "entry 1 cannot be read: No such file".to_owned(),
        ),
    ] {
        let stderr = one_line_failure(
            server_without_database(&db).env("MYAPI_TOKEN_KEY_FILES", files),
            2,
            &format!("token_key_files (MYAPI_TOKEN_KEY_FILES): {message}"),
        );
        assert!(!stderr.contains(TEST_TOKEN_KEY), "{stderr}");
    }
}

#[tokio::test]
async fn the_token_keys_in_use_are_logged_by_kid_only() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let new_key = "n-0123456789abcdefghijklmnopqrstuv";
    let listed = format!("2025-06:{new_key},old:{TEST_TOKEN_KEY}");
    for (token_keys, expected) in [
        (
            Some(listed),
            "token keys: signing with kid 2025-06 (HS256); accepting kids 2025-06, old",
        ),
        (
            None,
            "none of MYAPI_TOKEN_KEY_FILES, MYAPI_TOKEN_KEY and MYAPI_TOKEN_KEYS is set: \
             signing with a random per-process Ed25519 key",
        ),
    ] {
        let mut command = server(&db);
        command.env_remove("MYAPI_TOKEN_KEY");
        if let Some(token_keys) = token_keys {
            command.env("MYAPI_TOKEN_KEYS", token_keys);
        }
        let (mut child, port, log) = start_command(command);
        let health = reqwest::get(format!("http://127.0.0.1:{port}/health"))
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        assert!(terminate(&mut child).success());
        let all = log.try_iter().collect::<Vec<_>>().join("\n");
        assert!(all.contains(expected), "{all}");
        assert!(
            !all.contains(new_key) && !all.contains(TEST_TOKEN_KEY),
            "{all}"
        );
    }
}

/// The start-up line naming the database masks the secrets libpq reads from a DSN (the
/// forms and cases libpq itself refuses are covered by `myapi-models`' unit tests).
#[tokio::test]
async fn the_database_line_masks_every_secret_of_the_dsn() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let separator = if db.dsn.contains('?') { '&' } else { '?' };
    // libpq reads `sslpassword` only to decrypt a client key, so the connection ignores it.
    let dsn = format!("{}{separator}sslpassword=hunter2-ssl", db.dsn);
    let mut command = server(&db);
    command.env("MYAPI_DATABASE__DSN", &dsn);
    let (mut child, port, log) = start_command(command);
    let health = reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(terminate(&mut child).success());
    let all = log.try_iter().collect::<Vec<_>>().join("\n");
    assert!(all.contains("sslpassword=***)"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

/// A `.env` its group or others may read is warned about at start, by path and mode and
/// never by contents; one only its owner may read is not.
#[tokio::test]
async fn a_dotenv_others_may_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let dotenv = db.dir.path().join(".env");
    std::fs::write(
        &dotenv,
        "MYAPI_AUTH__TOKEN_AUDIENCE=dotenv-marker-audience\n",
    )
    .unwrap();
    for (mode, warned) in [(0o644, true), (0o640, true), (0o600, false)] {
        std::fs::set_permissions(&dotenv, std::fs::Permissions::from_mode(mode)).unwrap();
        let (mut child, port, log) = start_command(server(&db));
        let health = reqwest::get(format!("http://127.0.0.1:{port}/health"))
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        let status = terminate(&mut child);
        let lines: Vec<String> = log.try_iter().collect();
        assert!(status.success(), "{status:?}: {lines:#?}");
        let warnings: Vec<&String> = lines
            .iter()
            .filter(|line| line.contains("WARN") && line.contains(".env is readable"))
            .collect();
        if warned {
            assert_eq!(warnings.len(), 1, "{lines:#?}");
            assert!(
                warnings[0].contains(&format!(
                    ".env is readable by its group or others (mode 0{mode:o})"
                )),
                "{}",
                warnings[0]
            );
        } else {
            assert!(warnings.is_empty(), "{lines:#?}");
        }
        assert!(
            !lines.iter().any(|line| line.contains("dotenv-marker")),
            "{lines:#?}"
        );
    }
}

#[test]
fn bad_proxy_and_cors_settings_fail_with_one_line() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    for (variable, value, key) in [
        (
            "MYAPI_SERVER__TRUSTED_PROXIES",
            "not-a-cidr",
            "server.trusted_proxies",
        ),
        (
            "MYAPI_SERVER__TRUSTED_PROXIES",
            "10.0.0.0/8,10.0.0.0/33",
            "server.trusted_proxies",
        ),
        (
            "MYAPI_SERVER__CORS_ALLOWED_ORIGINS",
            "*",
            "server.cors_allowed_origins",
        ),
        (
            "MYAPI_SERVER__CORS_ALLOWED_ORIGINS",
            "https://app.example,https://app.example/",
            "server.cors_allowed_origins",
        ),
    ] {
        one_line_failure(server(&db).env(variable, value), 2, key);
    }
}

/// The server's resident memory, in KiB.
fn resident_kib(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A password check needs `auth.argon2_memory_kib` (19 MiB by default); the hashing threads
/// free it when logins stop, so a server that has answered a login goes back to about its
/// size before.
#[tokio::test]
async fn a_login_leaves_no_hashing_memory_behind() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let (mut child, port, _log) = start(&db);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    create_user(&db, "memory@example.com", "Memory-Passw0rd-1").await;
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let before = resident_kib(&child);
    let form = [
        ("username", "memory@example.com"),
        ("password", "Memory-Passw0rd-1"),
    ];
    // Half the working memory: the check's own allocations stay far below it.
    let limit = before + 19_456 / 2;
    // Several times: glibc serves a buffer freed once from its heap the next time, where a
    // free would keep it.
    for login in 1..=3 {
        let response = client
            .post(format!("{base}/token"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // A second without a login, and time for a busy machine.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut after = resident_kib(&child);
        while after > limit && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            after = resident_kib(&child);
        }
        assert!(
            after <= limit,
            "resident {before} KiB before the first login, {after} KiB after login {login}"
        );
    }
    assert!(terminate(&mut child).success());
}

#[tokio::test]
async fn the_access_log_names_the_forwarded_client() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let mut command = server(&db);
    command.env("MYAPI_SERVER__TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8");
    let (mut child, port, log) = start_command(command);
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .header("X-Forwarded-For", "198.51.100.1, 203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(terminate(&mut child).success());
    let lines: Vec<String> = log.try_iter().collect();
    let access: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"GET /health"))
        .collect();
    assert_eq!(access.len(), 1, "{lines:#?}");
    assert!(access[0].contains("] 203.0.113.7 \"GET"), "{}", access[0]);
}

/// Creates a reader `email` with `password` through the service tier, as `myapi-cli
/// create-user` does, for a server started on `db`.
pub(crate) async fn create_user(db: &TestDb, email: &str, password: &str) {
    let mut settings = db.settings();
    settings.database.run_migrations = false;
    let (email, password) = (email.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || {
        let services = myapi_services::Services::build(&settings, false).unwrap();
        services.auth.create_user(
            "Created",
            &email,
            password,
            myapi_services::auth::Role::Reader,
        )
    })
    .await
    .unwrap()
    .unwrap();
}

/// The `access_token` `POST {base}/token` answers to `form`.
pub(crate) async fn access_token(
    client: &reqwest::Client,
    base: &str,
    form: &[(&str, &str)],
) -> String {
    let answer: serde_json::Value = client
        .post(format!("{base}/token"))
        .form(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

/// Starts the binary with the test settings (see [`start_command`]).
fn start(db: &TestDb) -> (Child, u16, std::sync::mpsc::Receiver<String>) {
    start_command(server(db))
}

/// Starts `command` and returns it with its port, read from the "listening on" log line, and
/// every line it logs (those before that one included).
pub(crate) fn start_command(
    mut command: Command,
) -> (Child, u16, std::sync::mpsc::Receiver<String>) {
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(address) = line.split("listening on http://").nth(1) {
                // The port ends the line, or the message inside a JSON line.
                let port = address.rsplit(':').next().unwrap();
                let port: u16 = port.trim_end_matches(['"', '}']).trim().parse().unwrap();
                let _ = port_tx.send(port);
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    if let Ok(port) = port_rx.recv_timeout(Duration::from_secs(30)) {
        return (child, port, rx);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start");
}

/// Sends `signal` (`TERM`, `INT`) to the server.
pub(crate) fn send_signal(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} failed");
}

/// Waits for the server to exit. Generous: the server itself stops within its drain and
/// `shutdown_timeout_secs`, but a machine busy with other test binaries can be slow to
/// schedule it.
pub(crate) fn wait_for_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then [`wait_for_exit`].
pub(crate) fn terminate(child: &mut Child) -> std::process::ExitStatus {
    send_signal(child, "TERM");
    wait_for_exit(child)
}

#[tokio::test]
async fn logs_never_carry_secrets_and_sigterm_stops_cleanly() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        let (mut child, port, log) = start(&db);
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let password = "Sup3r-Secret-Passw0rd";
        create_user(&db, "log@example.com", password).await;
        let form = [
            ("grant_type", "password"),
            ("username", "log@example.com"),
            ("password", password),
        ];
        let token = access_token(&client, &base, &form).await;
        let wrong = [
            ("username", "log@example.com"),
            ("password", "Wrong-Secret-123"),
        ];
        assert_eq!(
            client
                .post(format!("{base}/token"))
                .form(&wrong)
                .send()
                .await
                .unwrap()
                .status(),
            400
        );
        let me = client
            .get(format!("{base}/users/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);

        drop(client);
        let stopping = Instant::now();
        let status = terminate(&mut child);
        assert!(
            stopping.elapsed() < Duration::from_secs(4),
            "graceful stop took {:?}",
            stopping.elapsed()
        );
        assert!(status.success(), "exit status {status:?}");
        let lines: Vec<String> = log.try_iter().collect();
        let all = lines.join("\n");
        for secret in [
            password,
            "Wrong-Secret-123",
            token.as_str(),
            TEST_TOKEN_KEY,
            "Bearer ",
        ] {
            assert!(!all.contains(secret), "log leaks {secret:?}:\n{all}");
        }
        // Each request logged once, with its status and request id.
        let token_lines: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("\"POST /token"))
            .collect();
        assert_eq!(token_lines.len(), 2, "{all}");
        assert!(token_lines.iter().all(|l| l.contains(" id=")), "{all}");
        // Each audit event is one info line (target `audit`) naming its request.
        for event in ["login_succeeded", "login_failed"] {
            let audit_lines: Vec<&String> = lines
                .iter()
                .filter(|l| l.contains(&format!("INFO  audit] {event} ")))
                .collect();
            assert_eq!(audit_lines.len(), 1, "{event}:\n{all}");
            assert!(audit_lines[0].contains("request_id="), "{all}");
            assert!(
                audit_lines[0].contains("subject=\"log@example.com\""),
                "{all}"
            );
        }
    }
}

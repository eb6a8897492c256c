//! CLI tests: the real `myapi-cli` binary against real databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use support::{Backend, TestDb};

/// `myapi-cli args…` on `db`, from the database's temp dir, with no token key set.
fn command(db: &TestDb, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_myapi-cli"));
    command
        .args(args)
        .current_dir(db.dir.path())
        .env("MYAPI_DATABASE__DSN", &db.dsn)
        .env_remove("MYAPI_TOKEN_KEY")
        .env_remove("MYAPI_TOKEN_KEYS")
        .env_remove("MYAPI_TOKEN_KEY_FILES");
    command
}

/// Runs [`command`] with `envs` set as well and nothing on stdin.
fn cli_with(db: &TestDb, args: &[&str], envs: &[(&str, &str)]) -> Output {
    command(db, args)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

/// Runs [`command`], feeding `stdin`.
fn cli(db: &TestDb, args: &[&str], stdin: &str) -> Output {
    let mut child = command(db, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn each_backend(test: impl Fn(TestDb)) {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if let Some(db) = TestDb::new(backend) {
            test(db);
        }
    }
}

fn write_csv(db: &TestDb, name: &str, body: &str) -> String {
    let path = db.dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

#[test]
fn user_admin_round_trip() {
    each_backend(|db| {
        let created = cli(
            &db,
            &[
                "create-user",
                "--name",
                "Ada",
                "--email",
                " Ada@Example.COM ",
                "--password-stdin",
            ],
            "s3cret-pass\n",
        );
        assert!(created.status.success(), "{}", stderr(&created));
        assert!(stdout(&created).contains("ada@example.com"));

        let listed = cli(&db, &["list-users"], "");
        assert_eq!(
            stdout(&listed).trim(),
            "1\tAda\tada@example.com\treader\tverified"
        );

        let promoted = cli(
            &db,
            &["set-role", "--email", "ADA@example.com", "--role", "editor"],
            "",
        );
        assert!(promoted.status.success(), "{}", stderr(&promoted));
        let listed = cli(&db, &["list-users"], "");
        assert_eq!(
            stdout(&listed).trim(),
            "1\tAda\tada@example.com\teditor\tverified"
        );
        let unknown = cli(
            &db,
            &["set-role", "--email", "ada@example.com", "--role", "owner"],
            "",
        );
        assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
        let admin = cli(
            &db,
            &[
                "create-user",
                "--name",
                "Root",
                "--email",
                "root@example.com",
                "--role",
                "admin",
                "--password",
                "long-enough",
            ],
            "",
        );
        assert!(stdout(&admin).contains("(admin)"), "{}", stderr(&admin));
        let nobody = cli(
            &db,
            &[
                "set-role",
                "--email",
                "nobody@example.com",
                "--role",
                "admin",
            ],
            "",
        );
        assert_eq!(nobody.status.code(), Some(1));

        let duplicate = cli(
            &db,
            &[
                "create-user",
                "--name",
                "Other",
                "--email",
                "ADA@example.com",
                "--password",
                "another-pass",
            ],
            "",
        );
        assert_eq!(duplicate.status.code(), Some(1));
        assert_eq!(
            stderr(&duplicate).lines().count(),
            1,
            "{}",
            stderr(&duplicate)
        );
        assert!(stderr(&duplicate).contains("already exists"));

        let changed = cli(
            &db,
            &[
                "set-password",
                "--email",
                "ada@example.com",
                "--password-stdin",
            ],
            "n3w-password\n",
        );
        assert!(
            changed.status.success(),
            "{:?} {}",
            changed.status,
            stderr(&changed)
        );
        let revoked = cli(&db, &["revoke-sessions", "--email", "Ada@example.com"], "");
        assert!(revoked.status.success(), "{}", stderr(&revoked));
        assert!(stdout(&revoked).contains("ada@example.com"));
        let nobody = cli(
            &db,
            &["revoke-sessions", "--email", "nobody@example.com"],
            "",
        );
        assert_eq!(nobody.status.code(), Some(1), "{}", stderr(&nobody));
        let purged = cli(&db, &["purge-sessions"], "");
        assert!(purged.status.success(), "{}", stderr(&purged));
        assert!(
            stdout(&purged).starts_with("purged "),
            "{}",
            stdout(&purged)
        );

        let deleted = cli(&db, &["delete-user", "--email", "ADA@example.com"], "");
        assert!(deleted.status.success(), "{}", stderr(&deleted));
        let again = cli(&db, &["delete-user", "--email", "ada@example.com"], "");
        assert_eq!(again.status.code(), Some(1));
        assert_eq!(
            stdout(&cli(&db, &["list-users"], "")),
            "2\tRoot\troot@example.com\tadmin\tverified\n"
        );
    });
}

#[test]
fn bad_input_is_one_line_and_non_zero() {
    each_backend(|db| {
        let cases: &[(&[&str], &str, i32)] = &[
            (
                &[
                    "create-user",
                    "--name",
                    "A",
                    "--email",
                    "not-an-email",
                    "--password",
                    "long-enough",
                ],
                "",
                1,
            ),
            (
                &[
                    "create-user",
                    "--name",
                    "A",
                    "--email",
                    "a@b.co",
                    "--password",
                    "short",
                ],
                "",
                1,
            ),
            (
                &[
                    "create-user",
                    "--name",
                    "A",
                    "--email",
                    "a@b.co",
                    "--password-stdin",
                ],
                "",
                1,
            ),
            (&["create-user", "--name", "A", "--email", "a@b.co"], "", 2),
            (
                &[
                    "create-user",
                    "--name",
                    "A",
                    "--email",
                    "<acc@example.com>",
                    "--password",
                    "long-enough",
                ],
                "",
                1,
            ),
            (
                &[
                    "create-user",
                    "--name",
                    "A",
                    "--email",
                    "a@b.co",
                    "--password-stdin",
                ],
                "long-\0-enough\n",
                1,
            ),
            (
                &[
                    "set-password",
                    "--email",
                    "nobody@b.co",
                    "--password",
                    "long-enough",
                ],
                "",
                1,
            ),
        ];
        for (args, stdin, code) in cases {
            let out = cli(&db, args, stdin);
            assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", stderr(&out));
            assert_eq!(
                stderr(&out).trim().lines().count(),
                1,
                "{args:?}: {}",
                stderr(&out)
            );
        }
        assert_eq!(
            stdout(&cli(&db, &["list-users"], "")),
            "",
            "nothing was written"
        );
    });
}

#[test]
fn unreachable_database_and_bad_config_fail_cleanly() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let unreachable = "postgres://nobody:hunter2@127.0.0.1:1/none";
    let out = cli_with(
        &db,
        &["list-users"],
        &[
            ("MYAPI_DATABASE__DSN", unreachable),
            ("MYAPI_DATABASE__CONNECT_TIMEOUT_SECS", "1"),
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"));

    let out = cli_with(&db, &["migrate"], &[("MYAPI_DATABASE__POOL_SIZE", "abc")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("database.pool_size"),
        "{}",
        stderr(&out)
    );
}

/// A libpq keyword/value DSN is PostgreSQL; a string with `=` that is not one is refused
/// (exit 2 naming the setting), never taken for a SQLite file name.
#[test]
fn keyword_value_dsns_are_postgres_and_ambiguous_ones_refused() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let url = url::Url::parse(&db.dsn).unwrap();
    let keyword_value = format!(
        "host={} port={} user={} dbname={} target_session_attrs=read-write",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432),
        url.username(),
        url.path().trim_start_matches('/'),
    );
    let run = |dsn: &str| cli_with(&db, &["migrate"], &[("MYAPI_DATABASE__DSN", dsn)]);
    let migrated = run(&keyword_value);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let again = run(&keyword_value);
    assert!(stdout(&again).contains("up to date"), "{}", stdout(&again));
    let ambiguous = run("host=db nonsense=1");
    assert_eq!(ambiguous.status.code(), Some(2));
    assert!(
        stderr(&ambiguous).contains("database.dsn"),
        "{}",
        stderr(&ambiguous)
    );
    assert_eq!(
        std::fs::read_dir(db.dir.path()).unwrap().count(),
        0,
        "no SQLite file was made"
    );
}

/// `.env` is read from the working directory only: one in a parent directory (another
/// checkout's, say) is never picked up.
#[test]
fn dot_env_is_read_from_the_working_directory_only() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let child = db.dir.path().join("child");
    std::fs::create_dir(&child).unwrap();
    std::fs::write(
        db.dir.path().join(".env"),
        "MYAPI_DATABASE__POOL_SIZE=abc\n",
    )
    .unwrap();
    let run = |dir: &std::path::Path| {
        command(&db, &["list-users"])
            .current_dir(dir)
            .env_remove("MYAPI_DATABASE__POOL_SIZE")
            .output()
            .unwrap()
    };
    let below = run(&child);
    assert!(below.status.success(), "{}", stderr(&below));
    let here = run(db.dir.path());
    assert_eq!(here.status.code(), Some(2), "{}", stderr(&here));
    assert!(
        stderr(&here).contains("database.pool_size"),
        "{}",
        stderr(&here)
    );
}

/// The N of `applied N migration(s): v1, v2, …`, if the output says that and lists N versions.
fn applied_migrations(output: &str) -> Option<usize> {
    let (count, versions) = output
        .trim()
        .strip_prefix("applied ")?
        .split_once(" migration(s): ")?;
    let count = count.parse().ok()?;
    (versions.split(", ").count() == count).then_some(count)
}

/// Holds for any number of migrations: a scaffolded service adds its own.
#[test]
fn migrate_is_idempotent() {
    each_backend(|db| {
        let first = cli(&db, &["migrate"], "");
        assert!(
            applied_migrations(&stdout(&first)).is_some_and(|n| n >= 1),
            "{} {}",
            stdout(&first),
            stderr(&first)
        );
        let second = cli(&db, &["migrate"], "");
        assert!(
            stdout(&second).contains("up to date"),
            "{} {}",
            stdout(&second),
            stderr(&second)
        );
    });
}

#[test]
fn fifty_concurrent_create_user_processes_make_one_row() {
    each_backend(|db| {
        assert!(cli(&db, &["migrate"], "").status.success());
        let children: Vec<_> = (0..50)
            .map(|i| {
                let email = if i % 2 == 0 {
                    "race@example.com"
                } else {
                    "RACE@example.com"
                };
                let name = format!("Racer {i}");
                let password = ["--password", "race-password"];
                command(&db, &["create-user", "--name", &name, "--email", email])
                    .args(password)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<Output> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let ok = outputs.iter().filter(|o| o.status.success()).count();
        assert_eq!(ok, 1, "exactly one create-user wins");
        for failed in outputs.iter().filter(|o| !o.status.success()) {
            assert_eq!(failed.status.code(), Some(1), "{}", stderr(failed));
            assert!(
                stderr(failed).contains("already exists"),
                "{}",
                stderr(failed)
            );
        }
        assert_eq!(stdout(&cli(&db, &["list-users"], "")).lines().count(), 1);
    });
}

#[test]
fn import_reports_bad_rows_and_writes_nothing() {
    each_backend(|db| {
        let path = write_csv(
            &db,
            "bad.csv",
            "movie_id,title,released,rating\n1,Good,1994,9.2\n2,,1990,9\nabc,Y,1990,9\n4,Z,1990,10.5\n",
        );
        let out = cli(&db, &["import-movies", &path], "");
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        for line in ["line 3", "line 4", "line 5"] {
            assert!(err.contains(line), "{err}");
        }
        assert!(!err.contains("line 2"), "{err}");
        // Nothing was written: the good row imports cleanly afterwards with mode `fail`.
        let good = write_csv(
            &db,
            "good.csv",
            "movie_id,title,released,rating\n1,Good,1994,9.2\n",
        );
        let out = cli(&db, &["import-movies", &good], "");
        assert!(stdout(&out).contains("1 inserted"), "{}", stderr(&out));
    });
}

#[test]
fn import_modes_for_existing_ids() {
    each_backend(|db| {
        let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/movies.csv");
        let out = cli(&db, &["import-movies", sample], "");
        assert!(
            stdout(&out).contains("45 inserted"),
            "{} {}",
            stdout(&out),
            stderr(&out)
        );

        let changed = write_csv(
            &db,
            "changed.csv",
            "movie_id,title,released,rating\n1,Renamed,1994,9.3\n1000,New,2020,7.5\n",
        );
        let fail = cli(&db, &["import-movies", &changed], "");
        assert_eq!(fail.status.code(), Some(1));
        assert!(stderr(&fail).contains("already exist"), "{}", stderr(&fail));

        let skip = cli(
            &db,
            &["import-movies", "--on-existing", "skip", &changed],
            "",
        );
        assert!(
            stdout(&skip).contains("1 inserted, 0 updated, 1 skipped"),
            "{}",
            stderr(&skip)
        );

        let update = cli(
            &db,
            &["import-movies", "--on-existing", "update", &changed],
            "",
        );
        assert!(
            stdout(&update).contains("0 inserted, 2 updated, 0 skipped"),
            "{}",
            stderr(&update)
        );

        let bad_mode = cli(
            &db,
            &["import-movies", "--on-existing", "merge", &changed],
            "",
        );
        assert_eq!(bad_mode.status.code(), Some(2));
        let missing = cli(&db, &["import-movies", "/nonexistent.csv"], "");
        assert_eq!(missing.status.code(), Some(1));
        assert_eq!(stderr(&missing).trim().lines().count(), 1);
    });
}

#[test]
fn large_import_is_not_cut_short_by_the_statement_timeout() {
    each_backend(|db| {
        let mut csv = String::from("movie_id,title,released,rating\n");
        for id in 1..=20_000 {
            csv.push_str(&format!(
                "{id},Movie {id},{},{}.{}\n",
                1900 + id % 120,
                id % 10,
                id % 10
            ));
        }
        let path = write_csv(&db, "large.csv", &csv);
        let out = cli_with(
            &db,
            &["import-movies", &path],
            &[("MYAPI_DATABASE__STATEMENT_TIMEOUT_MS", "1")],
        );
        assert!(stdout(&out).contains("20000 inserted"), "{}", stderr(&out));
        if db.dsn.starts_with("postgres") {
            // Vacuumed (the visibility map, for index-only scans) and analysed (statistics).
            let catalog = Command::new("psql")
                .args([
                    db.dsn.as_str(),
                    "-Atc",
                    "SELECT relallvisible > 0, reltuples >= 20000 FROM pg_class \
                     WHERE oid = 'myapi.movies'::regclass",
                ])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&catalog.stdout).trim(), "t|t");
        }
    });
}

/// Runs `myapi-cli args…` on a pseudo-terminal (util-linux `script`), typing `lines`.
fn on_terminal(db: &TestDb, args: &str, lines: &[&str]) -> Output {
    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!("{} {args}", env!("CARGO_BIN_EXE_myapi-cli")),
            "/dev/null",
        ])
        .current_dir(db.dir.path())
        .env("MYAPI_DATABASE__DSN", &db.dsn)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs");
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        std::thread::sleep(std::time::Duration::from_millis(400));
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn hidden_prompt_reads_the_password_from_the_terminal() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let mismatch = on_terminal(
        &db,
        "create-user --name Ada --email ada@example.com",
        &["first-password", "other-password"],
    );
    assert!(
        stdout(&mismatch).contains("passwords do not match"),
        "{}",
        stdout(&mismatch)
    );
    assert_eq!(
        stdout(&cli(&db, &["list-users"], "")),
        "",
        "nothing was written"
    );

    let created = on_terminal(
        &db,
        "create-user --name Ada --email ada@example.com",
        &["typed-password", "typed-password"],
    );
    let screen = stdout(&created);
    assert!(
        screen.contains("Password:") && screen.contains("created user"),
        "{screen}"
    );
    assert!(
        !screen.contains("typed-password"),
        "the password is not echoed: {screen}"
    );

    let mut settings = db.settings();
    settings.database.run_migrations = false;
    let services = myapi_services::Services::build(&settings, false).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let attempt = |password: &str| {
        let credentials = myapi_services::auth::Credentials {
            username: "ada@example.com".into(),
            password: password.into(),
            scope: None,
            client_id: None,
        };
        let client_ip = std::net::IpAddr::from([127, 0, 0, 1]);
        runtime.block_on(services.auth.login(credentials, client_ip))
    };
    assert!(
        attempt("typed-password").is_ok(),
        "the typed password is the one stored"
    );
    assert!(attempt("other-password").is_err());
}

/// The `audit` lines of `args`, each split into its ten columns.
fn audit_lines(db: &TestDb, args: &[&str]) -> Vec<Vec<String>> {
    let output = cli(db, &[&["audit"], args].concat(), "");
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| {
            let columns: Vec<String> = line.split('\t').map(str::to_owned).collect();
            assert_eq!(columns.len(), 10, "{line}");
            columns
        })
        .collect()
}

#[test]
fn admin_commands_leave_an_audit_trail() {
    each_backend(|db| {
        let run = |args: &[&str], stdin: &str| {
            let output = cli(&db, args, stdin);
            assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        };
        run(
            &[
                "create-user",
                "--name",
                "Ada",
                "--email",
                "ada@example.com",
                "--password-stdin",
            ],
            "s3cret-pass\n",
        );
        // A refused duplicate records nothing: the event is in the insert's transaction.
        let duplicate = cli(
            &db,
            &[
                "create-user",
                "--name",
                "Ada",
                "--email",
                "ADA@example.com",
                "--password",
                "another-pass",
            ],
            "",
        );
        assert_eq!(duplicate.status.code(), Some(1));
        run(
            &["set-role", "--email", "ada@example.com", "--role", "editor"],
            "",
        );
        run(
            &[
                "set-password",
                "--email",
                "ada@example.com",
                "--password-stdin",
            ],
            "n3w-password\n",
        );
        run(&["revoke-sessions", "--email", "ada@example.com"], "");
        run(&["delete-user", "--email", "ada@example.com"], "");
        // Nothing happened to nobody: nothing is recorded.
        let nobody = cli(&db, &["delete-user", "--email", "nobody@example.com"], "");
        assert_eq!(nobody.status.code(), Some(1));

        let lines = audit_lines(&db, &[]);
        let events: Vec<&str> = lines.iter().map(|l| l[2].as_str()).collect();
        assert_eq!(
            events,
            [
                "user_created",
                "role_changed",
                "password_changed",
                "sessions_revoked",
                "user_deleted"
            ]
        );
        for (index, line) in lines.iter().enumerate() {
            // id, at, event, actor, subject_user_id, subject, client, request_id, count, detail
            assert_eq!(line[0], (index + 1).to_string(), "{line:?}");
            assert!(line[1].ends_with('Z') && line[1].contains('T'), "{line:?}");
            assert_eq!(&line[3..9], ["cli", "1", "ada@example.com", "-", "-", "1"]);
        }
        assert_eq!(lines[0][9], "reader");
        assert_eq!(lines[1][9], "reader -> editor");
        let text = stdout(&cli(&db, &["audit"], ""));
        assert!(
            !text.contains("s3cret") && !text.contains("n3w-password"),
            "{text}"
        );
        // Read a page at a time: pages of 2 print the same lines.
        let paged = cli_with(
            &db,
            &["audit"],
            &[
                ("MYAPI_AUDIT__DEFAULT_PAGE_SIZE", "2"),
                ("MYAPI_AUDIT__MAX_PAGE_SIZE", "2"),
            ],
        );
        assert_eq!(stdout(&paged), text);

        // The user is gone; their trail is found by id and by email.
        assert_eq!(audit_lines(&db, &["--user", "1"]).len(), 5);
        assert_eq!(audit_lines(&db, &["--user", "ADA@example.com"]).len(), 5);
        assert!(audit_lines(&db, &["--user", "2"]).is_empty());
        let roles = audit_lines(&db, &["--event", "role_changed", "--since", "1h"]);
        assert_eq!(roles.len(), 1);
        assert_eq!(audit_lines(&db, &["--since", "0"]).len(), 5);
        assert_eq!(
            audit_lines(&db, &["--since", "2000-01-01T00:00:00Z"]).len(),
            5
        );
        assert!(audit_lines(&db, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
        let bad = cli(&db, &["audit", "--since", "soon", "--event", "login"], "");
        assert_eq!(bad.status.code(), Some(1));
        assert!(stderr(&bad).contains("since"), "{}", stderr(&bad));
        assert!(stderr(&bad).contains("event"), "{}", stderr(&bad));

        let purged = cli(&db, &["purge-audit"], "");
        assert!(purged.status.success(), "{}", stderr(&purged));
        assert_eq!(
            stdout(&purged),
            "purged 0 audit event(s) older than 365 days\n"
        );
        let kept = cli_with(
            &db,
            &["purge-audit"],
            &[("MYAPI_AUDIT__RETENTION_DAYS", "0")],
        );
        assert_eq!(
            stdout(&kept),
            "kept every audit event: audit.retention_days is 0\n"
        );
        assert_eq!(audit_lines(&db, &[]).len(), 5);
    });
}

#[test]
fn purge_idempotency_keys_deletes_only_expired_answers() {
    use myapi_services::idempotency::{IdempotencyKey, KeyedRequest, StoredResponse};

    each_backend(|db| {
        let services = myapi_services::Services::build(&db.settings(), true).unwrap();
        let heat = serde_json::json!({"title": "Heat", "released": 1995, "rating": 8.3});
        for key in ["old", "new"] {
            let key = IdempotencyKey::parse(key).unwrap();
            let request = KeyedRequest::new("1".into(), "POST /movies/", key, b"{}");
            let stored = |_: &_| {
                Ok(StoredResponse {
                    status: 201,
                    location: None,
                    etag: None,
                    body: "{}".into(),
                })
            };
            services
                .movies
                .create_once(&heat, &request, stored)
                .unwrap();
        }
        let purged = cli(&db, &["purge-idempotency-keys"], "");
        assert!(purged.status.success(), "{}", stderr(&purged));
        assert_eq!(
            stdout(&purged),
            "purged 0 idempotency key(s) older than 24 hours\n"
        );

        // One answer a day and a second old, as an operator's SQL would make it.
        let age = "UPDATE idempotency_keys SET created_at = created_at - 86401 \
                   WHERE idempotency_key = 'old'";
        let aged = match db.dsn.strip_prefix("sqlite://") {
            Some(path) => Command::new("python3")
                .args([
                    "-c",
                    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
                              c.execute(sys.argv[2]); c.commit()",
                    path,
                    age,
                ])
                .output()
                .unwrap(),
            None => Command::new("psql")
                .args([db.dsn.as_str(), "-v", "ON_ERROR_STOP=1", "-c"])
                .arg(age.replace("idempotency_keys", "myapi.idempotency_keys"))
                .output()
                .unwrap(),
        };
        assert!(aged.status.success(), "{}", stderr(&aged));
        let purged = cli(&db, &["purge-idempotency-keys"], "");
        assert_eq!(
            stdout(&purged),
            "purged 1 idempotency key(s) older than 24 hours\n"
        );
        let purged = cli(&db, &["purge-idempotency-keys"], "");
        assert_eq!(
            stdout(&purged),
            "purged 0 idempotency key(s) older than 24 hours\n"
        );

        let zero = cli_with(
            &db,
            &["purge-idempotency-keys"],
            &[("MYAPI_IDEMPOTENCY__RETENTION_HOURS", "0")],
        );
        assert_eq!(zero.status.code(), Some(2), "{}", stderr(&zero));
        assert!(
            stderr(&zero).contains("retention_hours"),
            "{}",
            stderr(&zero)
        );
        assert_eq!(stderr(&zero).trim().lines().count(), 1, "{}", stderr(&zero));
    });
}

/// `generate-key` needs no configuration (here, a broken one), writes the key for the
/// owner's eyes only and its public half beside it, prints the kid the server will give
/// it, and never overwrites a key.
#[test]
fn generate_key_writes_a_private_key_and_prints_its_kid() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let path = db.dir.path().join("token.pem");
    let path_arg = path.display().to_string();
    let broken = [("MYAPI_DATABASE__POOL_SIZE", "zero")];
    let output = cli_with(&db, &["generate-key", &path_arg], &broken);
    assert!(output.status.success(), "{}", stderr(&output));
    let kid = stdout(&output).trim().to_owned();
    assert_eq!(
        kid.len(),
        43,
        "an RFC 7638 SHA-256 thumbprint, base64url: {kid}"
    );
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    let key = myapi_services::auth::JwsKey::read_file(&path).unwrap();
    assert_eq!(
        myapi_services::auth::keys::thumbprint(&key.public_key().unwrap()),
        kid
    );
    let public = db.dir.path().join("token.pem.pub");
    assert_eq!(mode(&public), 0o644);
    assert!(
        std::fs::read_to_string(&public)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );

    let before = std::fs::read(&path).unwrap();
    let again = cli_with(&db, &["generate-key", &path_arg], &[]);
    assert_eq!(again.status.code(), Some(1));
    let message = stderr(&again);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.starts_with(&format!("myapi-cli: error: {path_arg}: cannot be written")),
        "{message}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

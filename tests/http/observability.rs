//! The real binary's metrics listener and log formats: Prometheus text on a listener of its
//! own, JSON log lines, and request ids that follow a request's work across threads.

use std::net::IpAddr;
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::binary::{create_user, one_line_failure, server, start_command, terminate};
use crate::support::{Backend, TestDb, in_ci};

const PASSWORD: &str = "correct-horse-battery";

/// The binary with metrics on a free port of their own; returns it, the API's base URL, the
/// metrics URL and its log.
pub(crate) fn start_with_metrics(
    mut command: Command,
) -> (Child, String, String, Receiver<String>) {
    command.env("MYAPI_METRICS__ADDRESS", "127.0.0.1:0");
    let (child, port, log) = start_command(command);
    // Logged before "listening on", so it has arrived.
    let metrics = log
        .try_iter()
        .find_map(|line| {
            let address = line.split("metrics on http://").nth(1)?;
            Some(address.split("/metrics").next()?.to_owned())
        })
        .expect("a `metrics on` line");
    (
        child,
        format!("http://127.0.0.1:{port}"),
        format!("http://{metrics}/metrics"),
        log,
    )
}

fn login_form(email: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "password".into()),
        ("username", email.into()),
        ("password", password.into()),
    ]
}

/// The sample lines of `text` whose name and labels start with `prefix`, e.g.
/// `myapi_login_attempts_total{outcome="success"}`, with their values.
fn samples<'a>(text: &'a str, prefix: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series, value.parse().ok()?))
        })
        .collect()
}

pub(crate) fn value(text: &str, series: &str) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .collect();
    assert_eq!(found.len(), 1, "{series} in:\n{text}");
    found[0]
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_in_prometheus_format() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        let (mut child, base, metrics_url, _log) = start_with_metrics(server(&db));
        create_user(&db, "metrics@example.com", PASSWORD).await;
        let client = reqwest::Client::new();
        let status = |response: reqwest::Response| response.status().as_u16();
        let get = |path: &str| client.get(format!("{base}{path}")).send();
        assert_eq!(status(get("/health").await.unwrap()), 200);
        assert_eq!(status(get("/no/such/path-4711").await.unwrap()), 404);
        let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
        let brewed = client.request(brew, format!("{base}/health")).send();
        assert_eq!(status(brewed.await.unwrap()), 405);
        let token = |password: &str| {
            client
                .post(format!("{base}/token"))
                .form(&login_form("metrics@example.com", password))
                .send()
        };
        assert_eq!(status(token(PASSWORD).await.unwrap()), 200);
        assert_eq!(status(token("wrong-password-1").await.unwrap()), 400);
        let unsupported = client
            .post(format!("{base}/token"))
            .form(&[("grant_type", "client_credentials")])
            .send();
        assert_eq!(status(unsupported.await.unwrap()), 400);
        assert_eq!(
            status(get("/metrics").await.unwrap()),
            404,
            "never on the API's listener"
        );

        let scraped = client.get(&metrics_url).send().await.unwrap();
        assert_eq!(scraped.status(), 200);
        let content_type = scraped.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = scraped.text().await.unwrap();

        let duration = "http_server_request_duration_seconds";
        assert!(
            text.contains(&format!("# TYPE {duration} histogram")),
            "{text}"
        );
        let health =
            r#"http_request_method="GET",http_route="/health",http_response_status_code="200""#;
        for le in ["0.005", "0.075", "10", "+Inf"] {
            let bucket = format!(r#"{duration}_bucket{{{health},le="{le}"}}"#);
            assert_eq!(value(&text, &bucket), 1.0, "{bucket}");
        }
        assert_eq!(value(&text, &format!("{duration}_count{{{health}}}")), 1.0);
        let unmatched =
            r#"http_request_method="GET",http_route="",http_response_status_code="404""#;
        // The unknown path and `/metrics` on the API's port.
        assert_eq!(
            value(&text, &format!("{duration}_count{{{unmatched}}}")),
            2.0
        );
        assert!(!text.contains("path-4711"), "raw paths never become labels");
        let other =
            r#"http_request_method="_OTHER",http_route="/health",http_response_status_code="405""#;
        assert_eq!(value(&text, &format!("{duration}_count{{{other}}}")), 1.0);
        assert!(!text.contains("BREW"));
        let token_route =
            r#"http_request_method="POST",http_route="/token",http_response_status_code="200""#;
        assert_eq!(
            value(&text, &format!("{duration}_count{{{token_route}}}")),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"http_server_active_requests{http_request_method="GET"}"#
            ),
            0.0
        );

        for (outcome, count) in [
            ("success", 1.0),
            ("invalid_grant", 1.0),
            ("unsupported_grant_type", 1.0),
        ] {
            let series = format!(r#"myapi_login_attempts_total{{outcome="{outcome}"}}"#);
            assert_eq!(value(&text, &series), count, "{series}");
        }
        assert!(text.contains("# TYPE myapi_login_attempts_total counter"));
        assert_eq!(value(&text, "myapi_hash_queue_depth"), 0.0);

        assert_eq!(
            value(&text, r#"db_client_connection_count{state="used"}"#),
            0.0
        );
        assert!(value(&text, r#"db_client_connection_count{state="idle"}"#) >= 1.0);
        assert_eq!(value(&text, "db_client_connection_max"), 10.0);
        let waits = samples(&text, "db_client_connection_wait_time_seconds_count");
        assert!(waits.len() == 1 && waits[0].1 >= 3.0, "{waits:?}");
        assert!(text.contains("db_client_connection_wait_time_seconds_bucket{le=\"0.001\"}"));

        assert!(value(&text, "process_resident_memory_bytes") > 1_000_000.0);
        assert!(value(&text, "process_open_fds") >= 3.0);
        assert!(value(&text, "process_cpu_seconds_total") >= 0.0);
        assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
        assert!(value(&text, "process_start_time_seconds") > 1.0e9);

        promtool_accepts(&text);
        assert!(terminate(&mut child).success());
    }
}

/// `promtool check metrics` parses and lints the exposition. Its only complaint may be the
/// OpenTelemetry name `db_client_connection_count`, whose `_count` suffix Prometheus's
/// naming lint reserves for histograms and summaries. Skipped without promtool, except under
/// CI (`.ci/run` installs Debian's `prometheus`, which ships it).
fn promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            assert!(!in_ci(), "promtool is required under CI=true: {error}");
            eprintln!("SKIPPED promtool check: {error}");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = report
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| {
            !line.starts_with("db_client_connection_count non-histogram and non-summary")
        })
        .collect();
    assert!(problems.is_empty(), "promtool: {report}\n{text}");
    // 0: clean; 3: lint findings only (all of them the known one above).
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "promtool: {report}"
    );
}

#[tokio::test]
async fn metrics_are_off_unless_an_address_is_set() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let (mut child, port, log) = start_command(server(&db));
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(terminate(&mut child).success());
    let lines: Vec<String> = log.try_iter().collect();
    assert!(
        !lines.iter().any(|line| line.contains("metrics on")),
        "{lines:#?}"
    );
}

#[test]
fn bad_metrics_and_log_settings_fail_with_one_line() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    for (variable, value, key) in [
        (
            "MYAPI_METRICS__ADDRESS",
            "localhost:9464",
            "metrics.address",
        ),
        ("MYAPI_METRICS__ADDRESS", "9464", "metrics.address"),
        ("MYAPI_LOG__FORMAT", "xml", "log.format"),
        ("MYAPI_LOG__FORMAT", "", "log.format"),
    ] {
        one_line_failure(server(&db).env(variable, value), 2, key);
    }
}

/// A JSON log line as a map; panics (with the line) if it is not one.
fn json(line: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(line) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => panic!("not a JSON object: {line}"),
    }
}

/// Waits until a line satisfying `wanted` arrives (a log line can trail its response).
fn wait_for(
    log: &Receiver<String>,
    seen: &mut Vec<serde_json::Map<String, serde_json::Value>>,
    wanted: impl Fn(&serde_json::Map<String, serde_json::Value>) -> bool,
) -> serde_json::Map<String, serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = seen.iter().find(|line| wanted(line)) {
            return found.clone();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) => seen.push(json(&line)),
            Err(_) => panic!("no such line among {seen:#?}"),
        }
    }
}

fn is_access(line: &serde_json::Map<String, serde_json::Value>, id: &str) -> bool {
    line["target"] == "myapi_web::access" && line.get("request_id").is_some_and(|v| v == id)
}

#[tokio::test]
async fn json_logs_carry_the_request_id_on_every_line_a_request_causes() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        let mut command = server(&db);
        command
            .env("MYAPI_LOG__FORMAT", "json")
            .env("MYAPI_SERVER__TRUSTED_PROXIES", "127.0.0.1")
            .env("MYAPI_AUTH__REFRESH_REUSE_GRACE_SECS", "0");
        let (mut child, port, log) = start_command(command);
        let base = format!("http://127.0.0.1:{port}");
        let mut seen = Vec::new();
        for line in log.try_iter() {
            seen.push(json(&line));
        }
        for line in &seen {
            for key in ["ts", "level", "target", "msg"] {
                assert!(line.contains_key(key), "{key} missing: {line:?}");
            }
            let ts = line["ts"].as_str().unwrap();
            assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        }

        // From the trusted proxy: its id is kept, echoed and logged with every part.
        let client = reqwest::Client::new();
        let response = client
            .get(format!("{base}/health?probe=1"))
            .header("X-Request-Id", "proxy-id-0001")
            .header("X-Forwarded-For", "203.0.113.7")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-request-id"], "proxy-id-0001");
        let access = wait_for(&log, &mut seen, |line| is_access(line, "proxy-id-0001"));
        assert_eq!(access["method"], "GET");
        assert_eq!(access["route"], "/health");
        assert_eq!(access["status"], 200);
        assert!(access["duration_ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(access["client_ip"], "203.0.113.7");
        assert_eq!(access["level"], "INFO");
        assert!(
            access["msg"]
                .as_str()
                .unwrap()
                .contains("\"GET /health?probe=1 HTTP/1.1\" 200")
        );

        // Malformed ids from the proxy, and any id from another peer, are replaced.
        let too_long = "x".repeat(65);
        for (local, sent) in [
            ("127.0.0.1", too_long.as_str()),
            ("127.0.0.1", "has space"),
            ("127.0.0.2", "forged-by-client"),
        ] {
            let client = reqwest::Client::builder()
                .local_address(local.parse::<IpAddr>().unwrap())
                .build()
                .unwrap();
            let response = client
                .get(format!("{base}/health"))
                .header("X-Request-Id", sent)
                .send()
                .await
                .unwrap();
            let id = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            assert_ne!(id, sent);
            let uuid = id.split('-').map(str::len).collect::<Vec<_>>();
            assert_eq!(uuid, [8, 4, 4, 4, 12], "{id}");
            assert_eq!(id.as_bytes()[14], b'4', "version 4: {id}");
            let access = wait_for(&log, &mut seen, |line| is_access(line, &id));
            assert_eq!(access["client_ip"], local);
        }

        // A refresh token used again: the warning is logged while the request is served.
        create_user(&db, "json@example.com", PASSWORD).await;
        let login = client
            .post(format!("{base}/token"))
            .form(&login_form("json@example.com", PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200);
        let tokens: serde_json::Value = login.json().await.unwrap();
        let refresh = tokens["refresh_token"].as_str().unwrap();
        let use_refresh = |id: &'static str| {
            client
                .post(format!("{base}/token"))
                .header("X-Request-Id", id)
                .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
                .send()
        };
        assert_eq!(use_refresh("refresh-first").await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(use_refresh("refresh-reused").await.unwrap().status(), 400);
        let warning = wait_for(&log, &mut seen, |line| {
            line["msg"]
                .as_str()
                .unwrap()
                .contains("refresh token reused")
        });
        assert_eq!(warning["request_id"], "refresh-reused", "{warning:?}");
        assert_eq!(warning["level"], "WARN");

        // A stored hash that cannot be used: logged on a hashing thread.
        corrupt_password_hash(&db, "json@example.com");
        let broken = client
            .post(format!("{base}/token"))
            .header("X-Request-Id", "corrupt-hash")
            .form(&login_form("json@example.com", PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(broken.status(), 400);
        let error = wait_for(&log, &mut seen, |line| {
            line["msg"]
                .as_str()
                .unwrap()
                .contains("stored password hash cannot be used")
        });
        assert_eq!(error["request_id"], "corrupt-hash", "{error:?}");
        assert!(
            error["target"]
                .as_str()
                .unwrap()
                .starts_with("myapi_services"),
            "{error:?}"
        );

        assert!(terminate(&mut child).success());
        for line in log.try_iter() {
            let line = json(&line);
            if line["target"] == "myapi_web::access" {
                for key in [
                    "request_id",
                    "method",
                    "route",
                    "status",
                    "duration_ms",
                    "client_ip",
                ] {
                    assert!(line.contains_key(key), "{key} missing: {line:?}");
                }
            }
        }
        // Lines outside any request carry no id.
        let startup = seen
            .iter()
            .find(|line| line["msg"].as_str().unwrap().starts_with("listening on"))
            .unwrap();
        assert!(!startup.contains_key("request_id"), "{startup:?}");
    }
}

/// Overwrites the user's stored hash with text no argon2 parser accepts, as a damaged row
/// would hold: with `psql` on PostgreSQL, Python's sqlite3 module on SQLite.
fn corrupt_password_hash(db: &TestDb, email: &str) {
    let sql =
        format!("UPDATE users SET hashed_password = 'not-a-phc-string' WHERE email = '{email}'");
    let status = if let Some(path) = db.dsn.strip_prefix("sqlite://") {
        Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()",
                path,
                &sql,
            ])
            .status()
    } else {
        Command::new("psql")
            .args([
                db.dsn.as_str(),
                "-qc",
                &format!("SET search_path TO myapi; {sql}"),
            ])
            .status()
    };
    assert!(status.unwrap().success(), "cannot update the stored hash");
}

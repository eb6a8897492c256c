//! Real OAuth2 client libraries (Python requests-oauthlib and Authlib) find the endpoints in
//! the RFC 8414 metadata, log in with the password grant, use the token, refresh it by
//! themselves once it has expired, and revoke it, as third-party clients would.
//!
//! Needs `pip install requests-oauthlib authlib` (`.ci/run` installs them); without them the
//! test says so and skips — except under `CI=true`, where it fails.

use std::process::Command;

use crate::support::{Backend, TestDb, in_ci};
use crate::{TestApp, spawn_app};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/clients/oauth2_clients.py"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_client_libraries_log_in_and_call_the_api() {
    if !python_has("requests_oauthlib, authlib", "requests-oauthlib authlib") {
        return;
    }
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        let app = spawn_app(db).await;
        app.import_sample().await;
        app.create_user("client@example.com", "client-password")
            .await;
        let base = instance_issuing_as_itself(&app).await;
        let args = [base.as_str(), "client@example.com", "client-password"];
        run_python(SCRIPT, &args).await;
    }
}

/// Whether Python can import `modules`. Without them a test says so and skips (pip
/// `packages` installs them), except under `CI=true`, where it fails.
pub(crate) fn python_has(modules: &str, packages: &str) -> bool {
    let available = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|out| out.status.success());
    if !available {
        assert!(!in_ci(), "CI=true needs the Python packages {packages}");
        eprintln!("SKIPPED: pip install {packages}");
    }
    available
}

/// Runs `python3 script args…` off the async workers, which the server under test needs,
/// and asserts that it succeeded.
pub(crate) async fn run_python(script: &str, args: &[&str]) {
    let command_line: Vec<String> = std::iter::once(script)
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(&command_line)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A free port, found by binding it and letting it go: for a server whose settings must
/// name its own address (`auth.issuer`) before it starts.
pub(crate) fn reserved_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Another instance whose `auth.issuer` is its own address, as in production, so that the
/// endpoints its metadata names are its own.
async fn instance_issuing_as_itself(app: &TestApp) -> String {
    let port = reserved_port();
    let mut server = app.server.clone();
    server.port = port;
    let mut settings = app.settings.clone();
    settings.database.run_migrations = false;
    settings.auth.issuer = format!("http://127.0.0.1:{port}");
    let (address, _) = crate::serve(server, settings).await;
    assert_eq!(address, format!("http://127.0.0.1:{port}"));
    address
}

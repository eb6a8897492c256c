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
    let available = Command::new("python3")
        .args(["-c", "import requests_oauthlib, authlib"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !available {
        assert!(
            !in_ci(),
            "CI=true needs the Python packages requests-oauthlib and authlib"
        );
        eprintln!("SKIPPED OAuth2 client test: pip install requests-oauthlib authlib");
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
        let output = tokio::task::spawn_blocking(move || {
            Command::new("python3")
                .args([SCRIPT, &base, "client@example.com", "client-password"])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "{backend:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Another instance whose `auth.issuer` is its own address, as in production, so that the
/// endpoints its metadata names are its own. The port is reserved by binding it first.
async fn instance_issuing_as_itself(app: &TestApp) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = app.server.clone();
    server.port = port;
    let mut settings = app.settings.clone();
    settings.database.run_migrations = false;
    settings.auth.issuer = format!("http://127.0.0.1:{port}");
    let (address, _) = crate::serve(server, settings).await;
    assert_eq!(address, format!("http://127.0.0.1:{port}"));
    address
}

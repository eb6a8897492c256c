//! Real OAuth2 client libraries (Python requests-oauthlib and Authlib) log in with the
//! password grant, use the token, and refresh it by themselves once it has expired, as
//! third-party clients would.
//!
//! Needs `pip install requests-oauthlib authlib` (`.ci/run` installs them); without them the
//! test says so and skips — except under `CI=true`, where it fails.

use std::process::Command;

use crate::spawn_app;
use crate::support::{Backend, TestDb, in_ci};

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
        let base = app.address.clone();
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

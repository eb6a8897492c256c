//! Schemathesis against the served OpenAPI document: schema-driven and fuzzed requests to
//! every operation, with a real bearer token; every check must pass (no 5xx, responses
//! conform to the document, valid data accepted, invalid data rejected).
//!
//! Needs `pip install schemathesis` (`.ci/run` installs it); without it the test says so and
//! skips — except under `CI=true`, where it fails.

use std::process::Command;

use myapi_services::auth::Role;

use crate::support::{Backend, TestDb, in_ci};
use crate::{json_body, spawn_app_with};

/// Per-operation expectations (the statuses of conditional writes); see the file.
const CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/http/schemathesis.toml"
);
/// Makes each well-formed `Idempotency-Key` unique (see the file).
const HOOKS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/http/schemathesis_hooks.py"
);
const PASSWORD: &str = "correct-horse-battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing() {
    if Command::new("st").arg("--version").output().is_err() {
        assert!(!in_ci(), "CI=true needs schemathesis (`st`)");
        eprintln!("SKIPPED schemathesis: pip install schemathesis");
        return;
    }
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        // Fuzzed logins must not trip the brute-force throttle halfway through the run.
        let app = spawn_app_with(db, |s| {
            s.auth.ip_failure_burst = 1_000_000.try_into().unwrap();
            s.auth.account_failure_burst = 1_000_000.try_into().unwrap();
        })
        .await;
        app.import_sample().await;
        // An editor, so the writes are fuzzed past the scope check.
        app.create_user_with_role("fuzz@example.com", PASSWORD, Role::Editor)
            .await;
        let response = app
            .post_token(&[("username", "fuzz@example.com"), ("password", PASSWORD)])
            .await;
        let token = json_body(response, 200, "application/json").await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        json_body(
            app.get_authed("/users/me", &token).await,
            200,
            "application/json",
        )
        .await;
        let url = app.url("/openapi.json");
        let scratch = app.db.dir.path().to_path_buf(); // schemathesis keeps state in its working dir
        let output = tokio::task::spawn_blocking(move || {
            Command::new("st")
                .current_dir(scratch)
                .env("SCHEMATHESIS_HOOKS", HOOKS)
                .args(["--config-file", CONFIG])
                .args([
                    "run",
                    &url,
                    "--checks",
                    "all",
                    "--max-examples",
                    "40",
                    "--seed",
                    "1",
                    "--no-color",
                ])
                .args(["-H", &format!("Authorization: Bearer {token}")])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "schemathesis found problems on {backend:?}:\n{report}"
        );
    }
}

//! Several instances on one PostgreSQL database spend one login budget (`auth.login_budget`
//! = "auto" means the database there); with "memory" each instance has its own. A budget
//! the database cannot answer is a 503.

use myapi_services::Settings;
use myapi_services::config::StateStore;

use crate::spawn_app_configured;
use crate::support::{Backend, TestDb};

const EMAIL: &str = "fleet@example.com";
const PASSWORD: &str = "correct-horse-battery";

/// Three instances; `guesses` wrong passwords for one account (`same_client`: from one
/// address, else each from its own) sent to them in turn. Returns how many were checked
/// (400) before the first 429, and checks that every later one is a 429.
async fn spread_guesses(store: StateStore, same_client: bool) -> Option<usize> {
    let db = TestDb::new(Backend::Postgres)?;
    // Clients are told apart by X-Forwarded-For, as behind the fleet's proxy.
    let app = spawn_app_configured(
        db,
        |server| server.trusted_proxies = "127.0.0.1".parse().unwrap(),
        |s: &mut Settings| {
            s.auth.login_budget = store;
            s.auth.account_failure_burst = 3.try_into().unwrap();
            s.auth.ip_failure_burst = if same_client { 3 } else { 1000 }.try_into().unwrap();
            s.auth.account_failure_refill_secs = 600;
            s.auth.ip_failure_refill_secs = 600;
        },
    )
    .await;
    app.create_user(EMAIL, PASSWORD).await;
    let instances = [
        app.address.clone(),
        app.start_instance(|_| {}).await,
        app.start_instance(|_| {}).await,
    ];
    let mut statuses = Vec::new();
    for i in 0..12 {
        // Each guess names another account when the client budget is under test.
        let username = if same_client {
            format!("user{i}@example.com")
        } else {
            EMAIL.to_owned()
        };
        let response = app
            .client
            .post(format!("{}/token", instances[i % 3]))
            .form(&[("username", username.as_str()), ("password", "wrong-guess")])
            .header(
                "X-Forwarded-For",
                format!("203.0.113.{}", if same_client { 1 } else { i + 1 }),
            )
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    let checked = statuses.iter().take_while(|s| **s == 400).count();
    assert!(
        statuses[checked..].iter().all(|s| *s == 429),
        "{store:?}: {statuses:?}"
    );
    Some(checked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_guesses_across_instances_stop_at_one_account_budget() {
    if let Some(checked) = spread_guesses(StateStore::Auto, false).await {
        assert_eq!(checked, 3, "one budget of 3 for the fleet");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_across_instances_spends_one_client_budget() {
    if let Some(checked) = spread_guesses(StateStore::Database, true).await {
        assert_eq!(checked, 3, "one budget of 3 for the fleet");
    }
}

/// The in-process store, chosen on PostgreSQL (as the benchmarks do to compare): each
/// instance counts alone, so three instances allow three budgets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_budgets_are_per_instance() {
    if let Some(checked) = spread_guesses(StateStore::Memory, false).await {
        assert_eq!(checked, 9, "3 instances x a budget of 3");
    }
}

/// A budget the database cannot answer stops the login with 503 and `Retry-After`: the
/// guess is neither let through uncounted nor answered as a wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_the_database_cannot_answer_is_a_503() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let app = spawn_app_configured(db, |_| {}, |_| {}).await;
    app.create_user(EMAIL, PASSWORD).await;
    let dropped = std::process::Command::new("psql")
        .args([
            app.db.dsn.as_str(),
            "-qc",
            "DROP FUNCTION myapi.login_budget_reserve_v2",
        ])
        .status()
        .unwrap();
    assert!(dropped.success());
    let response = app
        .post_token(&[("username", EMAIL), ("password", PASSWORD)])
        .await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
}

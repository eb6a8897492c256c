use crate::support::TestDb;
use crate::{both_backends, json_body, spawn_app};

async fn health_and_ready(db: TestDb) {
    let app = spawn_app(db).await;
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    assert!(health.headers().contains_key("x-request-id"));
    assert_eq!(
        json_body(health, 200, "application/json").await["status"],
        "ok"
    );
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(
        json_body(ready, 200, "application/json").await["status"],
        "ok"
    );
}
both_backends!(health_and_ready);

async fn unknown_routes_are_problem_json(db: TestDb) {
    let app = spawn_app(db).await;
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    let body = json_body(response, 404, "application/problem+json").await;
    assert_eq!(
        (body["status"].as_u64(), body["title"].as_str()),
        (Some(404), Some("Not Found"))
    );
}
both_backends!(unknown_routes_are_problem_json);

async fn ready_is_503_when_migrations_are_pending(db: TestDb) {
    let app = crate::spawn_app_with(db, |s| s.database.run_migrations = false).await;
    let response = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "5");
    json_body(response, 503, "application/problem+json").await;
    let services = app.services.clone();
    tokio::task::spawn_blocking(move || services.database.migrate())
        .await
        .unwrap()
        .unwrap();
    let response = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}
both_backends!(ready_is_503_when_migrations_are_pending);

async fn tables_live_in_schema_myapi_on_postgres(db: TestDb) {
    let app = spawn_app(db).await;
    if app.services.database.backend_name() == "postgres" {
        let out = std::process::Command::new("psql")
            .args([app.db.dsn.as_str(), "-Atc", "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'myapi'"])
            .output();
        if let Ok(out) = out {
            let tables = String::from_utf8_lossy(&out.stdout);
            let tables: Vec<&str> = tables.trim().split(',').collect();
            for expected in ["movies", "users"] {
                assert!(tables.contains(&expected), "{expected} not in {tables:?}");
            }
        }
    }
}
both_backends!(tables_live_in_schema_myapi_on_postgres);

async fn wrong_method_is_405_with_allow(db: TestDb) {
    let app = spawn_app(db).await;
    let response = app.client.post(app.url("/health")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET");
    json_body(response, 405, "application/problem+json").await;
    let response = app.client.get(app.url("/token")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    json_body(response, 405, "application/problem+json").await;
}
both_backends!(wrong_method_is_405_with_allow);

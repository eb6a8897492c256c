//! Races, scale-out, CORS and a real database outage.

use std::time::{Duration, Instant};

use myapi_services::ServiceError;
use myapi_services::auth::Role;
use myapi_web::Application;

use crate::support::{Backend, TestCluster, TestDb};
use crate::{both_backends, json_body, spawn_app, spawn_app_with, spawn_app_with_server};

async fn fifty_concurrent_create_user_calls_make_one_row(db: TestDb) {
    let app = spawn_app(db).await;
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let services = app.services.clone();
            let email = if i % 2 == 0 {
                "race@example.com"
            } else {
                "  RACE@Example.com"
            };
            std::thread::spawn(move || {
                services.auth.create_user(
                    &format!("Racer {i}"),
                    email,
                    "race-password".into(),
                    Role::Reader,
                )
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for result in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(result, Err(ServiceError::Conflict(_))),
            "{result:?}"
        );
    }
    let services = app.services.clone();
    let users = tokio::task::spawn_blocking(move || services.auth.list_users())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(users.len(), 1);
}
both_backends!(fifty_concurrent_create_user_calls_make_one_row);

async fn two_instances_start_at_once_on_a_fresh_database(db: TestDb) {
    let settings = db.settings();
    let starts: Vec<_> = (0..2)
        .map(|_| {
            let settings = settings.clone();
            std::thread::spawn(move || Application::build(&crate::test_server(), &settings))
        })
        .collect();
    let apps: Vec<Application> = starts
        .into_iter()
        .map(|s| s.join().unwrap().unwrap())
        .collect();
    let client = reqwest::Client::new();
    let ports: Vec<u16> = apps.iter().map(Application::port).collect();
    for app in apps {
        tokio::spawn(app.run_until_stopped());
    }
    for port in ports {
        let ready = client
            .get(format!("http://127.0.0.1:{port}/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
    }
}
both_backends!(two_instances_start_at_once_on_a_fresh_database);

async fn tokens_and_revocation_hold_across_instances(db: TestDb) {
    let a = spawn_app_with(db, |s| s.auth.revocation_cache_ms = 300).await;
    let b_url = a.start_instance(|_| {}).await;

    let token = a.login_new_user("shared@example.com").await;
    let on_b = a
        .client
        .get(format!("{b_url}/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_body(on_b, 200, "application/json").await["email"],
        "shared@example.com"
    );

    let services = a.services.clone();
    tokio::task::spawn_blocking(move || services.auth.delete_user("shared@example.com"))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    for base in [a.address.clone(), b_url] {
        let response = a
            .client
            .get(format!("{base}/users/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{base}");
    }
}
both_backends!(tokens_and_revocation_hold_across_instances);

#[tokio::test]
async fn cors_is_off_by_default_and_follows_the_allow_list() {
    let off = spawn_app(TestDb::new(Backend::Sqlite).unwrap()).await;
    let response = off
        .client
        .get(off.url("/health"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );

    let on = spawn_app_with_server(TestDb::new(Backend::Sqlite).unwrap(), |s| {
        s.cors_allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        on.client
            .request(reqwest::Method::OPTIONS, on.url("/movies/new"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );
    assert!(refused.status().is_client_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_fails_fast_with_503_and_recovers() {
    let cluster = tokio::task::spawn_blocking(|| {
        let cluster = TestCluster::new("the outage test", &[])?;
        cluster.start().unwrap();
        Some(cluster)
    });
    let Some(cluster) = cluster.await.unwrap() else {
        return;
    };
    let mut db = TestDb::new(Backend::Sqlite).unwrap();
    db.dsn = cluster.dsn();
    let app = spawn_app_with(db, |s| {
        s.database.connect_timeout_secs = 2.try_into().unwrap();
        s.auth.revocation_cache_ms = 0;
    })
    .await;
    app.import_sample().await;
    let token = app.login_new_user("outage@example.com").await;
    assert_eq!(app.get_authed("/movies/1", &token).await.status(), 200);

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().unwrap();
        cluster
    })
    .await
    .unwrap();

    for path in ["/movies/1", "/movies/new?year=1990&rating=9", "/users/me"] {
        let started = Instant::now();
        let response = app.get_authed(path, &token).await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(4), "{path} took {elapsed:?}");
        assert!(response.headers().contains_key("retry-after"), "{path}");
        let body = json_body(response, 503, "application/problem+json").await;
        assert!(
            !body["detail"].as_str().unwrap().contains("127.0.0.1"),
            "no driver details: {body}"
        );
    }
    let login = app
        .post_token(&[
            ("username", "outage@example.com"),
            ("password", "correct-horse-battery"),
        ])
        .await;
    assert!(login.headers().contains_key("retry-after"));
    assert_eq!(
        json_body(login, 503, "application/json").await["error"],
        "temporarily_unavailable"
    );
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the process stays up");

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start().unwrap();
        cluster
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if app.get_authed("/movies/1", &token).await.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "service did not recover after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        app.client
            .get(app.url("/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    drop(cluster);
}

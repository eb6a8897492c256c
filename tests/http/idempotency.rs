//! `Idempotency-Key` on `POST /movies/` (draft-ietf-httpapi-idempotency-key-header-07),
//! over HTTP on both backends and across two instances: a repeat gets the first answer
//! and creates nothing, another body with the same key is refused, keys are per caller,
//! malformed keys answer 400, concurrent repeats create one movie, and a request that died
//! mid-way leaves its key free.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use myapi_services::auth::Role;
use myapi_services::hooks::Point;
use myapi_services::movies::NewMoviesQuery;
use reqwest::StatusCode;
use tokio::task::JoinSet;

use crate::support::{Backend, TestDb};
use crate::{TestApp, both_backends, json_body, spawn_app};

const PASSWORD: &str = "correct-horse-battery";
const HEAT: &str = r#"{"title": "Heat", "released": 1995, "rating": 8.3}"#;
const ALIEN: &str = r#"{"title": "Alien", "released": 1979, "rating": 8.5}"#;

/// A new editor's token (`movies:write`).
async fn editor(app: &TestApp, email: &str) -> String {
    app.create_user_with_role(email, PASSWORD, Role::Editor)
        .await;
    let response = app
        .post_token(&[("username", email), ("password", PASSWORD)])
        .await;
    json_body(response, 200, "application/json").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// What a client can see of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: StatusCode,
    location: Option<String>,
    etag: Option<String>,
    content_type: String,
    body: String,
}

/// `POST /movies/` on `address` with the token, `key` (the raw header value) and `body`.
async fn create(
    client: &reqwest::Client,
    address: &str,
    token: &str,
    key: Option<&str>,
    body: &str,
) -> Seen {
    let mut request = client
        .post(format!("{address}/movies/"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Seen {
        status: response.status(),
        location: header("location"),
        etag: header("etag"),
        content_type: header("content-type").unwrap_or_default(),
        body: response.text().await.unwrap(),
    }
}

/// Every movie in the database, read past the server.
async fn movie_count(app: &TestApp) -> usize {
    let services = app.services.clone();
    tokio::task::spawn_blocking(move || {
        let everything = NewMoviesQuery::new(i32::MIN, -1.0, 1000, 0, 0).unwrap();
        services
            .movies
            .released_since(&everything)
            .unwrap()
            .movies
            .len()
    })
    .await
    .unwrap()
}

fn assert_problem(seen: &Seen, status: StatusCode, detail: &str) {
    assert_eq!(seen.status, status, "{seen:?}");
    assert_eq!(seen.content_type, "application/problem+json", "{seen:?}");
    let problem: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(problem["status"], status.as_u16());
    assert!(
        problem["detail"].as_str().unwrap().contains(detail),
        "{problem}"
    );
}

both_backends!(a_repeat_gets_the_first_answer_from_any_instance);
async fn a_repeat_gets_the_first_answer_from_any_instance(db: TestDb) {
    let app = spawn_app(db).await;
    let token = editor(&app, "editor@example.com").await;
    let other = app.start_instance(|_| {}).await;
    let key = Some(r#""retry-8e03978e""#);

    let first = create(&app.client, &app.address, &token, key, HEAT).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.location.as_deref(), Some("/movies/1"));
    assert!(first.etag.is_some());
    assert_eq!(first.content_type, "application/json");
    for address in [&app.address, &other, &app.address] {
        let repeat = create(&app.client, address, &token, key, HEAT).await;
        assert_eq!(repeat, first, "a repeat on {address}");
    }
    assert_eq!(movie_count(&app).await, 1);

    // A parameter is allowed (and ignored): the key is the same.
    let with_parameter = r#""retry-8e03978e";client=2"#;
    let repeat = create(&app.client, &other, &token, Some(with_parameter), HEAT).await;
    assert_eq!(repeat, first);
    // Without the header, or with a new key, the same body creates again.
    let unkeyed = create(&app.client, &app.address, &token, None, HEAT).await;
    assert_eq!(
        unkeyed.location.as_deref(),
        Some("/movies/2"),
        "{unkeyed:?}"
    );
    let new_key = create(&app.client, &other, &token, Some(r#""retry-2""#), HEAT).await;
    assert_eq!(
        new_key.location.as_deref(),
        Some("/movies/3"),
        "{new_key:?}"
    );
    assert_eq!(movie_count(&app).await, 3);
}

both_backends!(a_key_is_bound_to_its_body_and_its_caller);
async fn a_key_is_bound_to_its_body_and_its_caller(db: TestDb) {
    let app = spawn_app(db).await;
    let token = editor(&app, "editor@example.com").await;
    let other = app.start_instance(|_| {}).await;
    let key = Some(r#""order-17""#);
    let first = create(&app.client, &app.address, &token, key, HEAT).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");

    let reused = create(&app.client, &other, &token, key, ALIEN).await;
    assert_problem(
        &reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another request body",
    );
    let problem: serde_json::Value = serde_json::from_str(&reused.body).unwrap();
    assert_eq!(
        problem["errors"][0]["field"], "Idempotency-Key",
        "{problem}"
    );
    // Bytes, not meaning: the same movie written otherwise is another body.
    let respaced = HEAT.replace(": ", ":");
    let reused = create(&app.client, &app.address, &token, key, &respaced).await;
    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{reused:?}"
    );

    // Another caller's key of the same name is another key.
    let second = editor(&app, "second@example.com").await;
    let theirs = create(&app.client, &other, &second, key, ALIEN).await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{theirs:?}");
    assert_eq!(theirs.location.as_deref(), Some("/movies/2"));
    assert_eq!(movie_count(&app).await, 2);

    // An invalid body is refused before the key is looked at, and leaves it free.
    let invalid = create(&app.client, &app.address, &second, Some(r#""fresh""#), "{}").await;
    assert_eq!(
        invalid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{invalid:?}"
    );
    let fixed = create(&app.client, &app.address, &second, Some(r#""fresh""#), HEAT).await;
    assert_eq!(fixed.status, StatusCode::CREATED, "{fixed:?}");
}

both_backends!(malformed_keys_answer_400_and_create_nothing);
async fn malformed_keys_answer_400_and_create_nothing(db: TestDb) {
    let app = spawn_app(db).await;
    let token = editor(&app, "editor@example.com").await;
    let too_long = format!("\"{}\"", "k".repeat(256));
    for key in [
        "retry-1",         // a token, not a string
        "\"unterminated",  // not a string
        "\"\"",            // empty
        "\"a\", \"b\"",    // a list
        "1",               // an integer
        "\"tab\there\"",   // a control character
        "\"k\";",          // a broken parameter
        too_long.as_str(), // over 255 characters
    ] {
        let seen = create(&app.client, &app.address, &token, Some(key), HEAT).await;
        assert_problem(&seen, StatusCode::BAD_REQUEST, "Idempotency-Key");
    }
    let twice = app
        .client
        .post(app.url("/movies/"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("idempotency-key", "\"a\"")
        .header("idempotency-key", "\"a\"")
        .body(HEAT)
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    let longest = format!("\"{}\"", "k".repeat(255));
    let seen = create(&app.client, &app.address, &token, Some(&longest), HEAT).await;
    assert_eq!(seen.status, StatusCode::CREATED, "{seen:?}");
    assert_eq!(movie_count(&app).await, 1);
}

both_backends!(concurrent_repeats_create_one_movie);
async fn concurrent_repeats_create_one_movie(db: TestDb) {
    let app = spawn_app(db).await;
    let token = editor(&app, "editor@example.com").await;
    let other = app.start_instance(|_| {}).await;
    let mut requests = JoinSet::new();
    for i in 0..100 {
        let address = if i % 2 == 0 {
            app.address.clone()
        } else {
            other.clone()
        };
        let (client, token) = (app.client.clone(), token.clone());
        requests.spawn(async move {
            create(&client, &address, &token, Some(r#""one-of-100""#), HEAT).await
        });
    }
    let answers = requests.join_all().await;
    let created: Vec<_> = answers
        .iter()
        .filter(|seen| seen.status == StatusCode::CREATED)
        .collect();
    assert!(!created.is_empty(), "none was created: {:?}", answers[0]);
    assert!(
        created.iter().all(|seen| *seen == created[0]),
        "{created:?}"
    );
    for seen in answers
        .iter()
        .filter(|seen| seen.status != StatusCode::CREATED)
    {
        assert_problem(seen, StatusCode::CONFLICT, "still running");
    }
    assert_eq!(movie_count(&app).await, 1);
    let after = create(&app.client, &other, &token, Some(r#""one-of-100""#), HEAT).await;
    assert_eq!(&after, created[0]);
}

both_backends!(a_repeat_while_the_first_runs_is_refused_or_waits);
/// While the first request runs, a repeat on another instance is refused at once with 409
/// on PostgreSQL; on SQLite, which runs one writer at a time, it waits and gets the answer.
async fn a_repeat_while_the_first_runs_is_refused_or_waits(db: TestDb) {
    let sqlite = db.dsn.starts_with("sqlite");
    let app = spawn_app(db).await;
    let token = editor(&app, "editor@example.com").await;
    let other = app.start_instance(|_| {}).await;
    let (inserted, release) = pause_keyed_creates(&app);
    let first = {
        let (client, address, token) = (app.client.clone(), app.address.clone(), token.clone());
        tokio::spawn(
            async move { create(&client, &address, &token, Some(r#""slow""#), HEAT).await },
        )
    };
    tokio::task::spawn_blocking(move || inserted.recv_timeout(Duration::from_secs(10)).unwrap())
        .await
        .unwrap();
    let repeat = {
        let (client, token) = (app.client.clone(), token.clone());
        tokio::spawn(async move { create(&client, &other, &token, Some(r#""slow""#), HEAT).await })
    };
    let waiting = if sqlite {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !repeat.is_finished(),
            "the repeat did not wait for the first"
        );
        Some(repeat)
    } else {
        let refused = repeat.await.unwrap();
        assert_problem(&refused, StatusCode::CONFLICT, "still running");
        None
    };
    release.lock().unwrap().send(()).unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    app.served.hooks.clear(Point::KeyedMovieInserted);
    if let Some(repeat) = waiting {
        assert_eq!(repeat.await.unwrap(), first);
    }
    let again = create(&app.client, &app.address, &token, Some(r#""slow""#), HEAT).await;
    assert_eq!(again, first);
    assert_eq!(movie_count(&app).await, 1);
}

/// A request whose database session died mid-way (as when its server is killed) rolled
/// back its movie and its key: the retry creates the movie, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_first_died_mid_way_creates_one_movie() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let app = spawn_app(db).await;
    let token = editor(&app, "editor@example.com").await;
    let dsn = app.db.dsn.clone();
    app.served.hooks.set(Point::KeyedMovieInserted, move || {
        // The session holding the movie, the key and its lock, as a crash would end it.
        let out = std::process::Command::new("psql")
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", &dsn, "-c"])
            .arg(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = current_database() AND state = 'idle in transaction' \
                 AND query LIKE 'INSERT INTO \"movies\"%'",
            )
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{out:?}");
    });
    let died = create(&app.client, &app.address, &token, Some(r#""crash""#), HEAT).await;
    app.served.hooks.clear(Point::KeyedMovieInserted);
    assert_problem(&died, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(movie_count(&app).await, 0);
    let retry = create(&app.client, &app.address, &token, Some(r#""crash""#), HEAT).await;
    assert_eq!(retry.status, StatusCode::CREATED, "{retry:?}");
    let again = create(&app.client, &app.address, &token, Some(r#""crash""#), HEAT).await;
    assert_eq!(again, retry);
    assert_eq!(movie_count(&app).await, 1);
}

both_backends!(purging_deletes_only_expired_answers);
async fn purging_deletes_only_expired_answers(db: TestDb) {
    let app = spawn_app(db).await;
    let token = editor(&app, "editor@example.com").await;
    let first = create(&app.client, &app.address, &token, Some(r#""kept""#), HEAT).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let keys = app.services.idempotency.clone();
    let purged = tokio::task::spawn_blocking(move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (keys.purge().unwrap(), keys.purge_before(now + 1).unwrap())
    })
    .await
    .unwrap();
    assert_eq!(purged, (0, 1));
    // Purged, the key is free: the same request creates again.
    let again = create(&app.client, &app.address, &token, Some(r#""kept""#), HEAT).await;
    assert_eq!(again.location.as_deref(), Some("/movies/2"), "{again:?}");
}

both_backends!(an_expired_answer_is_not_replayed);
async fn an_expired_answer_is_not_replayed(db: TestDb) {
    let app = spawn_app(db).await;
    let token = editor(&app, "editor@example.com").await;
    let first = create(&app.client, &app.address, &token, Some(r#""old""#), HEAT).await;
    assert_eq!(first.status, StatusCode::CREATED);
    // One second short of the retention (24 hours): still replayed, even with a new body
    // refused.
    age_answers(&app, 86_399);
    let repeat = create(&app.client, &app.address, &token, Some(r#""old""#), HEAT).await;
    assert_eq!(repeat, first);
    let other = create(&app.client, &app.address, &token, Some(r#""old""#), ALIEN).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY, "{other:?}");
    // Past it, the key is free without a purge: any body runs again.
    age_answers(&app, 2);
    let other = create(&app.client, &app.address, &token, Some(r#""old""#), ALIEN).await;
    assert_eq!(other.location.as_deref(), Some("/movies/2"), "{other:?}");
    let repeat = create(&app.client, &app.address, &token, Some(r#""old""#), ALIEN).await;
    assert_eq!(repeat, other);
    assert_eq!(movie_count(&app).await, 2);
}

/// Moves every stored answer `seconds` into the past, with SQL as an operator would.
fn age_answers(app: &TestApp, seconds: i64) {
    let sql = format!("UPDATE idempotency_keys SET created_at = created_at - {seconds}");
    let out = match app.db.dsn.strip_prefix("sqlite://") {
        Some(path) => std::process::Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
                          c.execute(sys.argv[2]); c.commit()",
                path,
                &sql,
            ])
            .output()
            .unwrap(),
        None => std::process::Command::new("psql")
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", &app.db.dsn, "-c"])
            .arg(sql.replace("idempotency_keys", "myapi.idempotency_keys"))
            .output()
            .unwrap(),
    };
    assert!(out.status.success(), "{out:?}");
}

/// Holds every keyed create of the app's own instance at [`Point::KeyedMovieInserted`]
/// until released; says when one got there.
fn pause_keyed_creates(app: &TestApp) -> (mpsc::Receiver<()>, Arc<Mutex<mpsc::Sender<()>>>) {
    let (inserted_tx, inserted) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let (inserted_tx, release_rx) = (Mutex::new(inserted_tx), Mutex::new(release_rx));
    app.served.hooks.set(Point::KeyedMovieInserted, move || {
        inserted_tx.lock().unwrap().send(()).unwrap();
        let _ = release_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
    });
    (inserted, Arc::new(Mutex::new(release)))
}

//! Request limits (README: Rate limits), over HTTP on both backends: a looping caller is
//! refused with 429 while another is not, every limited answer carries the RateLimit
//! fields, limits follow the client through trusted proxies, three instances on one
//! PostgreSQL hold one caller within the README's bound, and an instance killed while it
//! holds a lease costs the caller no more than that lease.

use std::time::{Duration, Instant};

use myapi_services::Settings;
use reqwest::{Response, StatusCode};
use tokio::task::JoinSet;

use crate::binary::{access_token, create_user, server, terminate};
use crate::observability::{start_with_metrics, value};
use crate::support::{Backend, TestDb};
use crate::{TestApp, both_backends, json_body, spawn_app_configured, spawn_app_with};

const PASSWORD: &str = "correct-horse-battery";

/// Limits reads to `burst` at once and `per_second` after.
fn reads(per_second: u32, burst: u32) -> impl FnOnce(&mut Settings) {
    move |settings| {
        settings.limits.read.per_second = per_second.try_into().unwrap();
        settings.limits.read.burst = burst.try_into().unwrap();
    }
}

/// A structured-field parameter `name=<integer>` of a RateLimit field.
fn parameter(field: &str, name: &str) -> u64 {
    field
        .split(';')
        .find_map(|part| part.trim().strip_prefix(name)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {field}"))
}

/// The RateLimit fields of an answer, checked against `class` and the quota `burst`;
/// returns what remains.
fn remaining(response: &Response, class: &str, burst: u64) -> u64 {
    let field = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} on a {} answer", response.status()))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let policy = field("ratelimit-policy");
    assert!(policy.starts_with(&format!("\"{class}\";")), "{policy}");
    assert_eq!(parameter(&policy, "q"), burst, "{policy}");
    assert!(parameter(&policy, "w") >= 1, "{policy}");
    let state = field("ratelimit");
    assert!(state.starts_with(&format!("\"{class}\";")), "{state}");
    parameter(&state, "t");
    parameter(&state, "r")
}

/// The text the metrics listener at `url` serves.
async fn scrape(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

async fn get(app: &TestApp, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Response {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// Sends `GET path` until the first 429 (at most `limit` requests); returns the answers
/// admitted before it and the 429.
async fn until_refused(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    limit: usize,
) -> (Vec<Response>, Response) {
    let mut admitted = Vec::new();
    for _ in 0..limit {
        let response = get(app, path, token, headers).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            return (admitted, response);
        }
        admitted.push(response);
    }
    panic!("{limit} requests to {path} and no 429");
}

/// A 429 as the README describes it: problem+json, `Retry-After` of whole seconds (at
/// least 1), and the RateLimit fields with nothing left.
async fn assert_refused(response: Response, class: &str, burst: u64) {
    assert_eq!(remaining(&response, class, burst), 0);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body = json_body(response, 429, "application/problem+json").await;
    assert_eq!(body["status"], 429);
    assert!(body["detail"].as_str().unwrap().contains(class), "{body}");
}

both_backends!(a_looping_caller_is_refused_while_others_are_not);
async fn a_looping_caller_is_refused_while_others_are_not(db: TestDb) {
    // One request back a second: the loop below outruns it by far.
    let app = spawn_app_with(db, reads(1, 5)).await;
    let looping = app.login_new_user("loop@example.com").await;
    let other = app.login_new_user("other@example.com").await;

    let started = Instant::now();
    let (admitted, refused) = until_refused(
        &app,
        "/movies/new?year=2000&rating=5",
        Some(&looping),
        &[],
        50,
    )
    .await;
    let elapsed = started.elapsed().as_secs();
    // The burst, and at most one more for each second the loop took.
    assert!(
        (5..=5 + elapsed as usize + 1).contains(&admitted.len()),
        "{} admitted in {elapsed} s",
        admitted.len()
    );
    let left: Vec<u64> = admitted.iter().map(|r| remaining(r, "read", 5)).collect();
    assert!(admitted.iter().all(|r| r.status() == 200));
    assert_eq!(left[..4], [4, 3, 2, 1], "RateLimit counts down: {left:?}");
    assert_refused(refused, "read", 5).await;

    // Another caller has a budget of its own, and the looping one may still write.
    let response = get(&app, "/movies/new?year=2000&rating=5", Some(&other), &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(remaining(&response, "read", 5), 4);
    let write = app
        .client
        .delete(app.url("/movies/999999"))
        .bearer_auth(&looping)
        .send()
        .await
        .unwrap();
    assert_eq!(
        write.status(),
        403,
        "a reader's write is refused by scope, not by the limit"
    );
    remaining(&write, "write", 1_000_000);

    // Exempt routes carry no limit.
    for path in ["/health", "/openapi.json"] {
        let response = get(&app, path, Some(&looping), &[]).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers().get("ratelimit").is_none(), "{path}");
    }
}

both_backends!(callers_without_a_valid_token_are_limited_by_network);
async fn callers_without_a_valid_token_are_limited_by_network(db: TestDb) {
    let app = spawn_app_with(db, reads(1, 3)).await;
    // No token, and a token that is no good, spend the client network's budget (401s too).
    let (admitted, refused) = until_refused(
        &app,
        "/movies/new?year=2000&rating=5",
        Some("not-a-token"),
        &[],
        20,
    )
    .await;
    assert!(admitted.iter().all(|r| r.status() == 401));
    assert!((3..=5).contains(&admitted.len()), "{}", admitted.len());
    assert_refused(refused, "read", 3).await;
    let response = get(&app, "/movies/new?year=2000&rating=5", None, &[]).await;
    assert_eq!(response.status(), 429);
    // A valid token is a caller of its own.
    let token = app.login_new_user("reader@example.com").await;
    assert_eq!(
        get(&app, "/movies/new?year=2000&rating=5", Some(&token), &[])
            .await
            .status(),
        200
    );
}

both_backends!(limits_follow_the_client_through_trusted_proxies);
async fn limits_follow_the_client_through_trusted_proxies(db: TestDb) {
    let app = spawn_app_configured(
        db,
        |server| server.trusted_proxies = "127.0.0.1/32".parse().unwrap(),
        reads(1, 3),
    )
    .await;
    let first = [("x-forwarded-for", "203.0.113.7")];
    let (_, refused) =
        until_refused(&app, "/movies/new?year=2000&rating=5", None, &first, 20).await;
    assert_refused(refused, "read", 3).await;
    // Another client behind the same proxy is not refused.
    let second = [("x-forwarded-for", "203.0.113.8")];
    let response = get(&app, "/movies/new?year=2000&rating=5", None, &second).await;
    assert_eq!(response.status(), 401);
    assert_eq!(remaining(&response, "read", 3), 2);
    // A forged header from the client itself cannot buy a fresh budget: the proxy appends
    // the address it saw, and that is the one counted.
    let forged = [("x-forwarded-for", "198.51.100.1, 203.0.113.7")];
    assert_eq!(
        get(&app, "/movies/new?year=2000&rating=5", None, &forged)
            .await
            .status(),
        429
    );
}

/// Three instances on one PostgreSQL, one caller sending to all three at once: the caller
/// gets at most its burst, its rate for the time taken, and the instances' leases
/// (README: Rate limits), and is not starved below its rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_hold_one_caller_to_its_limit() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let (per_second, burst) = (20u32, 20u32);
    let app = spawn_app_with(db, reads(per_second, burst)).await;
    let token = app.login_new_user("fleet@example.com").await;
    let mut addresses = vec![app.address.clone()];
    for _ in 0..2 {
        addresses.push(app.start_instance(reads(per_second, burst)).await);
    }

    let run = Duration::from_secs(3);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for connection in 0..6 {
        let (client, token) = (app.client.clone(), token.clone());
        let address = addresses[connection % addresses.len()].clone();
        tasks.spawn(async move {
            let (mut admitted, mut refused) = (0u32, 0u32);
            while started.elapsed() < run {
                let response = client
                    .get(format!("{address}/movies/new?year=2000&rating=5"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                match response.status() {
                    StatusCode::OK => admitted += 1,
                    StatusCode::TOO_MANY_REQUESTS => refused += 1,
                    other => panic!("unexpected {other}"),
                }
            }
            (admitted, refused)
        });
    }
    let (mut admitted, mut refused) = (0, 0);
    while let Some(counts) = tasks.join_next().await {
        let (a, r) = counts.unwrap();
        admitted += a;
        refused += r;
    }
    let secs = started.elapsed().as_secs_f64();
    // The lease of a bucket of 20 is at most 5 (a quarter), held 1.25 times over at most.
    let bound = f64::from(burst) + f64::from(per_second) * secs + 3.0 * 1.25 * 5.0;
    let floor = f64::from(per_second) * (secs - 1.0);
    println!(
        "three instances: {admitted} admitted, {refused} refused in {secs:.2} s \
         (bound {bound:.0}, floor {floor:.0})"
    );
    assert!(refused > 0, "the loop was never refused");
    assert!(
        f64::from(admitted) <= bound,
        "{admitted} admitted, bound {bound:.0}"
    );
    assert!(
        f64::from(admitted) >= floor,
        "{admitted} admitted, floor {floor:.0}"
    );
}

/// An instance killed (SIGKILL) while it holds a lease: the requests it held unspent are
/// lost to the caller, no more than the lease, and another instance goes on limiting the
/// same caller. The killed one is the real binary, with metrics on: its 429s and its
/// leases are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_holding_a_lease_costs_at_most_that_lease() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let (per_second, burst) = (1u32, 40u32);
    let app = spawn_app_with(db, reads(per_second, burst)).await;
    create_user(&app.db, "kill@example.com", PASSWORD).await;
    let mut command = server(&app.db);
    command
        .env("MYAPI_LIMITS__READ__PER_SECOND", per_second.to_string())
        .env("MYAPI_LIMITS__READ__BURST", burst.to_string());
    let (mut child, base, metrics, _log) = start_with_metrics(command);
    let client = reqwest::Client::new();
    let token = access_token(
        &client,
        &base,
        &[("username", "kill@example.com"), ("password", PASSWORD)],
    )
    .await;

    // Spent quickly on the binary, so its next lease is the largest (burst / 4 = 10).
    let mut spent = 0;
    for _ in 0..15 {
        let response = client
            .get(format!("{base}/movies/new?year=2000&rating=5"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        spent += 1;
    }
    let text = scrape(&client, &metrics).await;
    let leases = value(
        &text,
        r#"myapi_rate_limit_leases_total{class="read",result="granted"}"#,
    );
    assert!(
        (2.0..15.0).contains(&leases),
        "{leases} leases for 15 requests"
    );
    let started = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();

    // The instance left standing admits what the bucket had left, less the dead lease.
    let (admitted, refused) = until_refused(
        &app,
        "/movies/new?year=2000&rating=5",
        Some(&token),
        &[],
        100,
    )
    .await;
    let admitted = admitted.len() as u32;
    let refilled = started.elapsed().as_secs() as u32 + 1;
    let largest_lease = burst / 4;
    println!("killed instance: {spent} spent, {admitted} admitted after the kill");
    assert!(
        spent + admitted + largest_lease * 5 / 4 >= burst,
        "{spent} + {admitted}: more than a lease was lost"
    );
    assert!(
        spent + admitted <= burst + refilled,
        "{spent} + {admitted} over the burst"
    );
    assert_refused(refused, "read", u64::from(burst)).await;
}

/// The binary's 429s are counted in `myapi_rate_limited_total{class}`.
#[tokio::test]
async fn refusals_are_counted_by_class() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let mut command = server(&db);
    command
        .env("MYAPI_LIMITS__WRITE__PER_SECOND", "1")
        .env("MYAPI_LIMITS__WRITE__BURST", "2");
    let (mut child, base, metrics, _log) = start_with_metrics(command);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = client
            .post(format!("{base}/movies/"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[..2], [401, 401]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    let text = scrape(&client, &metrics).await;
    let refused = statuses.iter().filter(|s| **s == 429).count() as f64;
    assert_eq!(
        value(&text, r#"myapi_rate_limited_total{class="write"}"#),
        refused
    );
    assert!(text.contains("# TYPE myapi_rate_limited_total counter"));
    terminate(&mut child);
}

/// Every limited operation documents its 429 and the RateLimit fields; exempt ones do not.
#[tokio::test]
async fn the_document_lists_429_on_every_limited_operation() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let app = spawn_app_with(db, |_| {}).await;
    let document = app.openapi_document().await;
    let mut limited = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<actix_web::http::Method>() else {
                continue;
            };
            let responses = &operation["responses"];
            match myapi_web::rate_limit::route_class(&method, path) {
                Some(_) => {
                    limited += 1;
                    let refused = &responses["429"];
                    assert!(
                        refused["headers"]["Retry-After"].is_object(),
                        "{method} {path}"
                    );
                    for answer in responses.as_object().unwrap().values() {
                        assert!(
                            answer["headers"]["RateLimit"].is_object(),
                            "{method} {path}"
                        );
                        assert!(answer["headers"]["RateLimit-Policy"].is_object());
                    }
                }
                None => {
                    for answer in responses.as_object().unwrap().values() {
                        assert!(
                            answer["headers"].get("RateLimit").is_none(),
                            "{method} {path}"
                        );
                    }
                }
            }
        }
    }
    assert!(limited >= 8, "{limited} limited operations");
}

//! A flood of `/token` requests from a network that is already throttled must cost the
//! server next to nothing: no hashing place, no account bucket, so everyone else's logins
//! go on. The test client connects from 127.0.0.1, the trusted proxy; `X-Forwarded-For`
//! names the clients.

use std::time::{Duration, Instant};

use crate::support::TestDb;
use crate::{TestApp, both_backends, spawn_app_configured};

const ATTACKER: &str = "203.0.113.66";
const USER: &str = "198.51.100.7";
const CONCURRENCY: usize = 300;

async fn login_from(app: &TestApp, client: &str, username: &str, password: &str) -> u16 {
    app.client
        .post(app.url("/token"))
        .header("x-forwarded-for", client)
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .map_or(0, |response| response.status().as_u16())
}

async fn a_throttled_flood_leaves_other_logins_alone(db: TestDb) {
    let app = spawn_app_configured(
        db,
        |server| server.trusted_proxies = "127.0.0.1/32".parse().unwrap(),
        |settings| {
            settings.auth.ip_failure_burst = 3.try_into().unwrap();
            settings.auth.ip_failure_refill_secs = 600;
            // Few hashing places, so that a flood taking them would show at once.
            settings.auth.hash_concurrency = 1.into();
            settings.auth.hash_queue = 2;
        },
    )
    .await;
    app.create_user("owner@example.com", "correct-horse-battery")
        .await;
    for i in 0..3 {
        let status = login_from(&app, ATTACKER, &format!("junk{i}@example.com"), "guess").await;
        assert_eq!(status, 400);
    }
    let deadline = Instant::now() + Duration::from_secs(4);
    let flood: Vec<_> = (0..CONCURRENCY)
        .map(|worker| {
            let (client, url) = (app.client.clone(), app.url("/token"));
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let username = format!("junk-{worker}-{n}@example.com");
                    let response = client
                        .post(&url)
                        .header("x-forwarded-for", ATTACKER)
                        .form(&[("username", username.as_str()), ("password", "guess")])
                        .send()
                        .await;
                    answers.push(response.map_or(0, |r| r.status().as_u16()));
                    n += 1;
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut logins = Vec::new();
    for _ in 0..5 {
        logins.push(login_from(&app, USER, "owner@example.com", "correct-horse-battery").await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut flooded = 0;
    for worker in flood {
        for status in worker.await.unwrap() {
            assert_eq!(
                status, 429,
                "every flood request is turned away as throttled"
            );
            flooded += 1;
        }
    }
    println!("{flooded} throttled requests in 4 s; the other client's logins: {logins:?}");
    assert_eq!(logins, [200; 5]);
}
both_backends!(a_throttled_flood_leaves_other_logins_alone);

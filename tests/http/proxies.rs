//! Behind a reverse proxy: `server.trusted_proxies` decides whose forwarding header
//! (`server.client_ip_header`) names the client, and so whose failed logins the throttle
//! counts together.
//!
//! The test client connects from 127.0.0.1, which stands in for the proxy.

use myapi_web::client::ClientIpHeader;

use crate::support::{Backend, TestDb};
use crate::{TestApp, both_backends, json_body, spawn_app_configured};

/// Failed logins one client may make before it is throttled, in these tests.
const IP_BURST: u32 = 3;

/// An app whose throttle has only the per-IP budget in play, trusting `trusted_proxies`
/// with the default `server.client_ip_header`.
async fn spawn_behind(db: TestDb, trusted_proxies: &str) -> TestApp {
    spawn_behind_with(db, trusted_proxies, |_| {}).await
}

async fn spawn_behind_with(
    db: TestDb,
    trusted_proxies: &str,
    tweak_server: impl FnOnce(&mut myapi_web::ServerSettings),
) -> TestApp {
    spawn_app_configured(
        db,
        |server| {
            server.trusted_proxies = trusted_proxies.parse().unwrap();
            tweak_server(server);
        },
        |settings| {
            settings.auth.ip_failure_burst = IP_BURST.try_into().unwrap();
            settings.auth.ip_failure_refill_secs = 600;
            settings.auth.account_failure_burst = 1000.try_into().unwrap();
        },
    )
    .await
}

/// A failed login carrying `headers`.
async fn wrong_password(app: &TestApp, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client.post(app.url("/token")).form(&[
        ("grant_type", "password"),
        ("username", "victim@example.com"),
        ("password", "not-the-password"),
    ]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn assert_invalid_grant(app: &TestApp, headers: &[(&str, &str)]) {
    let body = json_body(wrong_password(app, headers).await, 400, "application/json").await;
    assert_eq!(body["error"], "invalid_grant", "{headers:?}");
}

async fn assert_throttled(app: &TestApp, headers: &[(&str, &str)]) {
    let response = wrong_password(app, headers).await;
    assert!(
        response.headers().contains_key("retry-after"),
        "{headers:?}"
    );
    let body = json_body(response, 429, "application/json").await;
    assert_eq!(body["error"], "slow_down", "{headers:?}");
}

/// Uses up the budget of the client that `headers` name.
async fn exhaust(app: &TestApp, headers: &[(&str, &str)]) {
    for _ in 0..IP_BURST {
        assert_invalid_grant(app, headers).await;
    }
    assert_throttled(app, headers).await;
}

async fn a_trusted_proxy_keeps_clients_apart(db: TestDb) {
    let app = spawn_behind(db, "127.0.0.1/32").await;
    app.create_user("victim@example.com", "correct-horse-battery")
        .await;
    exhaust(&app, &[("X-Forwarded-For", "203.0.113.7")]).await;

    // Another client behind the same proxy is not locked out.
    assert_invalid_grant(&app, &[("X-Forwarded-For", "203.0.113.8")]).await;

    // Entries the client prepends are never read: the proxy's own entry counts.
    assert_throttled(&app, &[("X-Forwarded-For", "198.51.100.1, 203.0.113.7")]).await;
    assert_throttled(
        &app,
        &[
            ("X-Forwarded-For", "198.51.100.1"),
            ("X-Forwarded-For", "203.0.113.7"),
        ],
    )
    .await;
    // Garbage ends the walk at the proxy that reported it: one shared key, never a fresh one.
    exhaust(&app, &[("X-Forwarded-For", "203.0.113.7, unknown")]).await;
    assert_throttled(&app, &[("X-Forwarded-For", "_hidden")]).await;
    assert_throttled(&app, &[]).await;
}
both_backends!(a_trusted_proxy_keeps_clients_apart);

/// The default reads `X-Forwarded-For` only: behind a proxy that appends to it and passes
/// `Forwarded` on untouched (HAProxy, cloud load balancers), a client writing its own
/// `Forwarded` cannot pick its address.
async fn a_spoofed_forwarded_header_is_ignored_by_default(db: TestDb) {
    let app = spawn_behind(db, "127.0.0.1/32").await;
    exhaust(&app, &[("X-Forwarded-For", "203.0.113.7")]).await;
    for spoofed in [
        "for=198.51.100.1",
        r#"for="[2001:db8::1]:4711";proto=https"#,
    ] {
        assert_throttled(
            &app,
            &[("Forwarded", spoofed), ("X-Forwarded-For", "203.0.113.7")],
        )
        .await;
    }
    // Alone, it names nobody: the proxy is the client, with a budget of its own.
    exhaust(&app, &[("Forwarded", "for=198.51.100.2")]).await;
    assert_throttled(&app, &[("Forwarded", "for=198.51.100.3")]).await;
    assert_throttled(&app, &[]).await;
}
both_backends!(a_spoofed_forwarded_header_is_ignored_by_default);

/// `client_ip_header = "forwarded"` reads RFC 7239 `Forwarded` (quoted, bracketed, with a
/// port) and ignores `X-Forwarded-For`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_is_read_when_it_is_the_configured_header() {
    let app = spawn_behind_with(
        TestDb::new(Backend::Sqlite).unwrap(),
        "127.0.0.1/32",
        |server| server.client_ip_header = ClientIpHeader::Forwarded,
    )
    .await;
    exhaust(&app, &[("Forwarded", r#"for="[2001:db8::1]:4711""#)]).await;
    assert_invalid_grant(&app, &[("Forwarded", r#"for="[2001:db8:1::1]""#)]).await;
    assert_throttled(
        &app,
        &[
            ("Forwarded", r#"for="[2001:db8::1]""#),
            ("X-Forwarded-For", "203.0.113.9"),
        ],
    )
    .await;
    // X-Forwarded-For names nobody: the proxy is the client.
    exhaust(&app, &[]).await;
    assert_throttled(&app, &[("X-Forwarded-For", "203.0.113.9")]).await;
}

async fn without_trusted_proxies_forwarding_headers_are_ignored(db: TestDb) {
    let app = spawn_behind(db, "").await;
    exhaust(&app, &[("X-Forwarded-For", "203.0.113.7")]).await;
    // Everyone is 127.0.0.1, whatever the headers claim.
    assert_throttled(&app, &[("X-Forwarded-For", "203.0.113.8")]).await;
    assert_throttled(&app, &[("Forwarded", r#"for="[2001:db8::1]:4711""#)]).await;
    assert_throttled(&app, &[]).await;
}
both_backends!(without_trusted_proxies_forwarding_headers_are_ignored);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_the_trusted_networks_is_the_client() {
    let app = spawn_behind(
        TestDb::new(Backend::Sqlite).unwrap(),
        "10.0.0.0/8, 192.0.2.1",
    )
    .await;
    exhaust(&app, &[("X-Forwarded-For", "203.0.113.7")]).await;
    assert_throttled(&app, &[("X-Forwarded-For", "203.0.113.8")]).await;
}

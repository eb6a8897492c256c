//! What users do to their own accounts over HTTP, with mail to a real SMTP server:
//! `PUT /users/me/password`.

use std::time::Duration;

use myapi_services::auth::Role;
use serde_json::json;

use crate::mail::SmtpSink;
use crate::support::TestDb;
use crate::{TestApp, both_backends, json_body, spawn_app_with};

const EMAIL: &str = "account@example.com";
const PASSWORD: &str = "correct-horse-battery";
const NEW_PASSWORD: &str = "staple-battery-horse";
/// The bearer check's window in these tests (`auth.revocation_cache_ms`).
const WINDOW: Duration = Duration::from_millis(300);

/// Logs in with `password`; (access token, refresh token), or the failed answer's body.
async fn login(app: &TestApp, password: &str) -> Result<(String, String), serde_json::Value> {
    let response = app
        .post_token(&[("username", EMAIL), ("password", password)])
        .await;
    if response.status() != 200 {
        return Err(response.json().await.unwrap());
    }
    let body = json_body(response, 200, "application/json").await;
    Ok((
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    ))
}

async fn change(app: &TestApp, token: &str, body: &serde_json::Value) -> reqwest::Response {
    app.client
        .put(app.url("/users/me/password"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn refresh_status(app: &TestApp, refresh_token: &str) -> u16 {
    app.post_token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ])
    .await
    .status()
    .as_u16()
}

async fn a_password_change_ends_every_other_session(db: TestDb) {
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let app = spawn_app_with(db, |s| {
        sink.configure(s);
        s.auth.revocation_cache_ms = WINDOW.as_millis().try_into().unwrap();
        s.auth.ip_failure_burst = 5.try_into().unwrap();
        s.auth.ip_failure_refill_secs = 1;
    })
    .await;
    app.create_user(EMAIL, PASSWORD).await;
    app.create_user_with_role("admin@example.com", PASSWORD, Role::Admin)
        .await;
    let admin = app
        .post_token(&[("username", "admin@example.com"), ("password", PASSWORD)])
        .await;
    let admin = json_body(admin, 200, "application/json").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (this_access, this_refresh) = login(&app, PASSWORD).await.unwrap();
    let (other_access, other_refresh) = login(&app, PASSWORD).await.unwrap();

    // Refusals that change nothing.
    let unauthenticated = app
        .client
        .put(app.url("/users/me/password"))
        .json(&json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    for (body, status) in [
        (
            json!({"current_password": PASSWORD, "new_password": "short"}),
            422,
        ),
        (json!({"current_password": PASSWORD}), 422),
        (
            json!({"current_password": PASSWORD, "new_password": 12_345_678_901_u64}),
            422,
        ),
        (
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD, "x": 1}),
            422,
        ),
    ] {
        let response = change(&app, &this_access, &body).await;
        let problem = json_body(response, status, "application/problem+json").await;
        assert!(
            !problem.to_string().contains("12345678901"),
            "a password is never echoed: {problem}"
        );
    }
    let form = app
        .client
        .put(app.url("/users/me/password"))
        .bearer_auth(&this_access)
        .form(&[
            ("current_password", PASSWORD),
            ("new_password", NEW_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    let not_json = app
        .client
        .put(app.url("/users/me/password"))
        .bearer_auth(&this_access)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);

    // A wrong current password is refused and changes nothing.
    let wrong = json!({"current_password": "not-the-password", "new_password": NEW_PASSWORD});
    let response = change(&app, &this_access, &wrong).await;
    let problem = json_body(response, 403, "application/problem+json").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("current_password")
    );
    assert!(login(&app, PASSWORD).await.is_ok());

    let address = app.address.clone();
    let right = json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD});
    let response = app
        .client
        .put(format!("{address}/users/me/password"))
        .bearer_auth(&this_access)
        .json(&right)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens = json_body(response, 200, "application/json").await;
    let new_access = tokens["access_token"].as_str().unwrap();
    let new_refresh = tokens["refresh_token"].as_str().unwrap();
    let me = app
        .client
        .get(format!("{address}/users/me"))
        .bearer_auth(new_access)
        .send()
        .await
        .unwrap();
    assert_eq!(json_body(me, 200, "application/json").await["email"], EMAIL);

    // Every earlier session has ended, this one's included: refresh tokens at once...
    for refresh_token in [&this_refresh, &other_refresh] {
        assert_eq!(refresh_status(&app, refresh_token).await, 400);
    }
    assert_eq!(refresh_status(&app, new_refresh).await, 200);
    // ... access tokens for introspection at once, for the bearer check within the window.
    for token in [&this_access, &other_access] {
        let answer = app
            .client
            .post(app.url("/introspect"))
            .bearer_auth(&admin)
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        let answer = json_body(answer, 200, "application/json").await;
        assert_eq!(answer, json!({"active": false}));
    }
    tokio::time::sleep(WINDOW + Duration::from_millis(100)).await;
    for token in [&this_access, &other_access] {
        assert_eq!(app.get_authed("/users/me", token).await.status(), 401);
    }

    // The old password no longer logs in; the new one does.
    let old = app
        .client
        .post(format!("{address}/token"))
        .form(&[("username", EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_body(old, 400, "application/json").await["error"],
        "invalid_grant"
    );
    let new = app
        .client
        .post(format!("{address}/token"))
        .form(&[("username", EMAIL), ("password", NEW_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(new.status(), 200);

    // The user is told, once.
    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0]["to"][0], EMAIL);
    assert_eq!(mails[0]["subject"], "Your password was changed");
    let body = mails[0]["body"].as_str().unwrap();
    assert!(
        body.contains(EMAIL) && !body.contains(NEW_PASSWORD),
        "{body}"
    );
}
both_backends!(a_password_change_ends_every_other_session);

/// The token of the link in a verification mail.
fn link_token(mail: &serde_json::Value) -> String {
    let body = mail["body"].as_str().unwrap();
    let link = body
        .split_whitespace()
        .find(|word| word.contains("/verify-email?token="))
        .unwrap_or_else(|| panic!("no link in {body}"));
    assert!(
        link.starts_with("http://127.0.0.1:8000/verify-email?token="),
        "{link}"
    );
    link.rsplit_once("token=").unwrap().1.to_owned()
}

async fn sign_up(app: &TestApp, address: &str, email: &str, password: &str) -> u16 {
    app.client
        .post(format!("{address}/users/"))
        .json(&json!({"name": "New User", "email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn verify(app: &TestApp, token: &str) -> u16 {
    app.client
        .post(app.url("/users/verify"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn token_answer(app: &TestApp, email: &str, password: &str) -> (u16, serde_json::Value) {
    let response = app
        .post_token(&[("username", email), ("password", password)])
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn sign_up_verify_and_log_in(db: TestDb) {
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let open = |s: &mut myapi_services::Settings| {
        sink.configure(s);
        s.auth.registration = myapi_services::config::Registration::Open;
    };
    let app = spawn_app_with(db, open).await;
    let closed = app
        .start_instance(|s| s.auth.registration = myapi_services::config::Registration::Closed)
        .await;
    assert_eq!(sign_up(&app, &closed, EMAIL, PASSWORD).await, 403);

    // Bad input is refused before anything is written.
    let bad = app
        .client
        .post(app.url("/users/"))
        .json(&json!({"name": "", "email": "not-an-address", "password": "short"}))
        .send()
        .await
        .unwrap();
    let problem = json_body(bad, 422, "application/problem+json").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "email", "password"]);

    assert_eq!(sign_up(&app, &app.address, EMAIL, PASSWORD).await, 202);
    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["subject"], "Verify your address");
    assert_eq!(mails[0]["to"][0], EMAIL);
    let token = link_token(&mails[0]);

    // Unverified: told so only after the right password.
    let (status, refused) = token_answer(&app, EMAIL, PASSWORD).await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"], "invalid_grant");
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .contains("not verified"),
        "{refused}"
    );
    let (_, wrong) = token_answer(&app, EMAIL, "not-the-password").await;
    assert_eq!(wrong["error_description"], "incorrect username or password");

    // A GET of the link (a mail scanner) uses nothing; the POST verifies, once.
    let scanned = app
        .client
        .get(app.url(&format!("/users/verify?token={token}")))
        .send()
        .await
        .unwrap();
    assert!(!scanned.status().is_success());
    assert_eq!(verify(&app, "made-up-token").await, 400);
    assert_eq!(verify(&app, &token).await, 204);
    assert_eq!(verify(&app, &token).await, 400, "used up");
    let (status, _) = token_answer(&app, EMAIL, PASSWORD).await;
    assert_eq!(status, 200);

    // The address is taken now: the same answer, and its owner is told instead.
    assert_eq!(
        sign_up(&app, &app.address, EMAIL, "another-password").await,
        202
    );
    let mails = sink.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails[1]["subject"],
        "Someone tried to sign up with your address"
    );
    assert!(!mails[1]["body"].as_str().unwrap().contains("token="));
    let (status, _) = token_answer(&app, EMAIL, "another-password").await;
    assert_eq!(status, 400, "the account is unchanged");
    let (status, _) = token_answer(&app, EMAIL, PASSWORD).await;
    assert_eq!(status, 200);

    let services = app.services.clone();
    let users = tokio::task::spawn_blocking(move || services.auth.list_users())
        .await
        .unwrap()
        .unwrap();
    assert!(users.iter().all(|user| user.email_verified));
}
both_backends!(sign_up_verify_and_log_in);

/// An unverified sign-up whose link expired does not hold the address: signing up again
/// replaces it, and its old link stays dead. PostgreSQL only: the expiry is set with psql.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_sign_up_can_be_made_again() {
    let Some(db) = TestDb::new(crate::support::Backend::Postgres) else {
        return;
    };
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let app = spawn_app_with(db, |s| {
        sink.configure(s);
        s.auth.registration = myapi_services::config::Registration::Open;
    })
    .await;
    assert_eq!(sign_up(&app, &app.address, EMAIL, PASSWORD).await, 202);
    let first = link_token(&sink.wait_for(1, Duration::from_secs(10)).await[0]);
    // While the link works, the address is held: a second sign-up only tells the owner.
    assert_eq!(
        sign_up(&app, &app.address, EMAIL, "squatter-password").await,
        202
    );
    let mails = sink.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        mails[1]["subject"],
        "Someone tried to sign up with your address"
    );
    crate::support::psql(
        &app.db.dsn,
        "UPDATE myapi.account_tokens SET expires_at = 0",
    );
    assert_eq!(verify(&app, &first).await, 400, "expired");
    assert_eq!(sign_up(&app, &app.address, EMAIL, NEW_PASSWORD).await, 202);
    let mails = sink.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(mails[2]["subject"], "Verify your address");
    let second = link_token(&mails[2]);
    assert_eq!(verify(&app, &first).await, 400, "the old link stays dead");
    assert_eq!(verify(&app, &second).await, 204);
    let (status, _) = token_answer(&app, EMAIL, NEW_PASSWORD).await;
    assert_eq!(status, 200);
    let (status, _) = token_answer(&app, EMAIL, PASSWORD).await;
    assert_eq!(status, 400);
}

/// The token of the link in a reset mail.
fn reset_token(mail: &serde_json::Value) -> String {
    let body = mail["body"].as_str().unwrap();
    let link = body
        .split_whitespace()
        .find(|word| word.contains("/reset-password?token="))
        .unwrap_or_else(|| panic!("no link in {body}"));
    link.rsplit_once("token=").unwrap().1.to_owned()
}

/// The link of reset mail number `n` (from 1) the sink has received, once it has.
async fn nth_reset_link(sink: &SmtpSink, n: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let links: Vec<String> = sink
            .received()
            .iter()
            .filter(|mail| mail["subject"] == "Reset your password")
            .map(reset_token)
            .collect();
        if let Some(link) = links.get(n - 1) {
            return link.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no reset mail {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ask_reset(app: &TestApp, email: &str) -> u16 {
    app.client
        .post(app.url("/password-reset"))
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> u16 {
    app.client
        .post(app.url("/password-reset/confirm"))
        .json(&json!({"token": token, "new_password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn a_reset_sets_the_password_once_and_ends_every_session(db: TestDb) {
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let on = |s: &mut myapi_services::Settings| {
        sink.configure(s);
        s.auth.password_reset = myapi_services::config::PasswordReset::On;
        // More requests for one address than its bucket's default three.
        s.auth.reset_account_burst = 10.try_into().unwrap();
    };
    let app = spawn_app_with(db, on).await;
    let off = app
        .start_instance(|s| s.auth.password_reset = myapi_services::config::PasswordReset::Off)
        .await;
    let refused = app
        .client
        .post(format!("{off}/password-reset"))
        .json(&json!({ "email": EMAIL }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "off by default");
    app.create_user(EMAIL, PASSWORD).await;
    app.create_user("other@example.com", PASSWORD).await;
    let (_, refresh_token) = login(&app, PASSWORD).await.unwrap();

    // An unknown address gets the same answer, and no mail.
    assert_eq!(ask_reset(&app, "nobody@example.com").await, 202);
    assert_eq!(ask_reset(&app, "not an address").await, 422);
    assert_eq!(ask_reset(&app, EMAIL).await, 202);
    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0]["to"][0], EMAIL);
    let replaced = reset_token(&mails[0]);
    // A new request replaces the link.
    assert_eq!(ask_reset(&app, EMAIL).await, 202);
    let mails = sink.wait_for(2, Duration::from_secs(10)).await;
    let token = reset_token(&mails[1]);
    assert_eq!(confirm_reset(&app, &replaced, NEW_PASSWORD).await, 400);
    assert_eq!(confirm_reset(&app, "made-up", NEW_PASSWORD).await, 400);
    assert_eq!(confirm_reset(&app, &token, "short").await, 422);
    // Two confirmations of one token at once: one sets the password, the other is 400.
    let (first, second) = tokio::join!(
        confirm_reset(&app, &token, NEW_PASSWORD),
        confirm_reset(&app, &token, "a-racing-password")
    );
    let mut statuses = [first, second];
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 400]);
    if first != 204 {
        // The racing password won: set the one the rest of the test expects.
        assert_eq!(ask_reset(&app, EMAIL).await, 202);
        let again = nth_reset_link(&sink, 3).await;
        assert_eq!(confirm_reset(&app, &again, NEW_PASSWORD).await, 204);
    }
    assert_eq!(
        confirm_reset(&app, &token, "yet-another-one").await,
        400,
        "used"
    );

    // Every session ended; the new password logs in, the old one does not.
    assert_eq!(refresh_status(&app, &refresh_token).await, 400);
    assert!(login(&app, PASSWORD).await.is_err());
    assert!(login(&app, NEW_PASSWORD).await.is_ok());
    let mails = sink.wait_for(3, Duration::from_secs(10)).await;
    assert!(
        mails
            .iter()
            .any(|mail| mail["subject"] == "Your password was reset")
    );

    // A reset link asked for before a password change cannot undo the change.
    let asked_before = sink
        .received()
        .iter()
        .filter(|mail| mail["subject"] == "Reset your password")
        .count();
    assert_eq!(ask_reset(&app, EMAIL).await, 202);
    let pending = nth_reset_link(&sink, asked_before + 1).await;
    let (access, _) = login(&app, NEW_PASSWORD).await.unwrap();
    let changed = change(
        &app,
        &access,
        &json!({"current_password": NEW_PASSWORD, "new_password": "changed-after-reset"}),
    )
    .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(confirm_reset(&app, &pending, "undo-the-change").await, 400);
    let other = app
        .post_token(&[("username", "other@example.com"), ("password", PASSWORD)])
        .await;
    assert_eq!(
        other.status(),
        200,
        "a token for one user is no use for another"
    );
}
both_backends!(a_reset_sets_the_password_once_and_ends_every_session);

/// `POST /password-reset` takes as long for an address without an account as for one with
/// an account: medians of 200 requests each, interleaved, within 10% (the buckets raised
/// so that every answer is a 202).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_request_takes_as_long_for_an_unknown_address() {
    let Some(db) = TestDb::new(crate::support::Backend::Postgres) else {
        return;
    };
    let app = spawn_app_with(db, |s| {
        s.auth.password_reset = myapi_services::config::PasswordReset::On;
        s.mail.log_links = true;
        s.auth.reset_ip_burst = 10_000.try_into().unwrap();
        s.auth.reset_account_burst = 10_000.try_into().unwrap();
    })
    .await;
    app.create_user(EMAIL, PASSWORD).await;
    // Each request's work goes on after its answer: a pause after each keeps it from
    // slowing the next one, and the order alternates, so neither kind always follows the
    // other (the rest of the suite runs alongside).
    let time = |email: &'static str| {
        let app = &app;
        async move {
            let started = std::time::Instant::now();
            assert_eq!(ask_reset(app, email).await, 202);
            let took = started.elapsed();
            tokio::time::sleep(Duration::from_millis(5)).await;
            took
        }
    };
    for _ in 0..20 {
        time(EMAIL).await;
        time("nobody@example.com").await;
    }
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for round in 0..200 {
        if round % 2 == 0 {
            known.push(time(EMAIL).await);
            unknown.push(time("nobody@example.com").await);
        } else {
            unknown.push(time("nobody@example.com").await);
            known.push(time(EMAIL).await);
        }
    }
    known.sort_unstable();
    unknown.sort_unstable();
    let (known, unknown) = (known[100], unknown[100]);
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    println!("reset request medians: known {known:?}, unknown {unknown:?}, ratio {ratio:.3}");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "known {known:?} vs unknown {unknown:?}"
    );
}

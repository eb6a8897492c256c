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

//! Refresh tokens (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2), and
//! revocation (RFC 7009), on both backends over HTTP.

use std::time::Duration;

use myapi_services::Services;
use myapi_services::auth::Role;
use myapi_services::hooks::Point;

use crate::support::TestDb;
use crate::{TestApp, both_backends, json_body, spawn_app, spawn_app_with};

const EMAIL: &str = "session@example.com";
const PASSWORD: &str = "correct-horse-battery";

/// Logs in; returns (access token, refresh token).
async fn login(app: &TestApp) -> (String, String) {
    let response = app
        .post_token(&[("username", EMAIL), ("password", PASSWORD)])
        .await;
    tokens(json_body(response, 200, "application/json").await)
}

fn tokens(body: serde_json::Value) -> (String, String) {
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    (access, refresh)
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.post_token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ])
    .await
}

async fn assert_invalid_grant(response: reqwest::Response) {
    let body = json_body(response, 400, "application/json").await;
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

async fn refresh_rotates_and_reuse_revokes_the_family(db: TestDb) {
    let app = spawn_app_with(db, |s| s.auth.refresh_reuse_grace_secs = 0).await;
    app.create_user(EMAIL, PASSWORD).await;
    let (_, first) = login(&app).await;
    let (access, second) =
        tokens(json_body(refresh(&app, &first).await, 200, "application/json").await);
    assert_ne!(first, second, "the refresh token rotates");
    assert_eq!(app.get_authed("/users/me", &access).await.status(), 200);

    // The used token shown again, past the grace period: the family is revoked, so the
    // thief and the victim both lose the session.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_invalid_grant(refresh(&app, &first).await).await;
    assert_invalid_grant(refresh(&app, &second).await).await;

    // A new login starts a new family.
    let (_, fresh) = login(&app).await;
    assert_eq!(refresh(&app, &fresh).await.status(), 200);
    assert_invalid_grant(refresh(&app, "not-a-refresh-token").await).await;
}
both_backends!(refresh_rotates_and_reuse_revokes_the_family);

/// Two refreshes of one token in flight at once (a double submit): exactly one rotates,
/// and within the grace period the other gets the same new refresh token, so both answers
/// work. Once that token was used, the old one shown again is reuse.
async fn racing_refreshes_get_the_same_successor(db: TestDb) {
    let app = spawn_app_with(db, |s| s.auth.refresh_reuse_grace_secs = 30).await;
    app.create_user(EMAIL, PASSWORD).await;
    for _ in 0..5 {
        let (_, token) = login(&app).await;
        let (a, b) = tokio::join!(refresh(&app, &token), refresh(&app, &token));
        let a = tokens(json_body(a, 200, "application/json").await);
        let b = tokens(json_body(b, 200, "application/json").await);
        assert_eq!(a.1, b.1, "one successor for both");
        assert_ne!(a.1, token);
        for access in [&a.0, &b.0] {
            assert_eq!(app.get_authed("/users/me", access).await.status(), 200);
        }
        assert_eq!(
            refresh(&app, &a.1).await.status(),
            200,
            "the family lives on"
        );
        assert_invalid_grant(refresh(&app, &token).await).await;
    }
    let (_, token) = login(&app).await;
    let (_, next) = tokens(json_body(refresh(&app, &token).await, 200, "application/json").await);
    let (_, after) = tokens(json_body(refresh(&app, &next).await, 200, "application/json").await);
    assert_invalid_grant(refresh(&app, &token).await).await;
    assert_invalid_grant(refresh(&app, &after).await).await;
}
both_backends!(racing_refreshes_get_the_same_successor);

/// Runs `change` (a password change or `revoke-sessions`, through the service tier as the
/// CLI does) once, at `point` of the server's own login or refresh.
fn once_at(app: &TestApp, point: Point, change: impl FnOnce(&Services) + Send + 'static) {
    let services = app.services.clone();
    let change = std::sync::Mutex::new(Some(change));
    app.served.hooks.set(point, move || {
        if let Some(change) = change.lock().unwrap().take() {
            change(&services);
        }
    });
}

fn change_password(services: &Services) {
    services
        .auth
        .set_password(EMAIL, "a-new-password".into())
        .unwrap();
}

fn revoke_sessions(services: &Services) {
    services.auth.revoke_sessions(EMAIL).unwrap();
}

/// A login whose password was checked against the old password, and which would start its
/// session after the change, gets nothing: neither tokens nor a family that refreshes.
async fn a_login_in_flight_ends_with_a_password_change(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_user(EMAIL, PASSWORD).await;
    for change in [change_password, revoke_sessions] {
        once_at(&app, Point::LoginVerified, change);
        let response = app
            .post_token(&[("username", EMAIL), ("password", PASSWORD)])
            .await;
        assert_invalid_grant(response).await;
        app.served.hooks.clear(Point::LoginVerified);
        // Back to the password in use for the next round.
        let services = app.services.clone();
        tokio::task::spawn_blocking(move || services.auth.set_password(EMAIL, PASSWORD.into()))
            .await
            .unwrap()
            .unwrap();
    }
}
both_backends!(a_login_in_flight_ends_with_a_password_change);

/// A refresh that used its token just before a password change answers, but with tokens
/// of the old stamp: the access token is refused and the refresh token refreshes nothing.
async fn a_refresh_in_flight_ends_with_a_password_change(db: TestDb) {
    let app = spawn_app_with(db, |s| s.auth.revocation_cache_ms = 0).await;
    app.create_user(EMAIL, PASSWORD).await;
    for change in [change_password, revoke_sessions] {
        let (_, token) = login(&app).await;
        once_at(&app, Point::RefreshRotated, change);
        let (access, next) =
            tokens(json_body(refresh(&app, &token).await, 200, "application/json").await);
        app.served.hooks.clear(Point::RefreshRotated);
        assert_eq!(app.get_authed("/users/me", &access).await.status(), 401);
        assert_invalid_grant(refresh(&app, &next).await).await;
        let services = app.services.clone();
        tokio::task::spawn_blocking(move || services.auth.set_password(EMAIL, PASSWORD.into()))
            .await
            .unwrap()
            .unwrap();
    }
}
both_backends!(a_refresh_in_flight_ends_with_a_password_change);

/// On PostgreSQL a password change does not wait for a refresh that has marked its token
/// used: the change commits between that update and the refresh's read of the user, and
/// the refresh must see it and refuse (on SQLite the refresh holds the write lock, so the
/// change waits for it, which the test above covers).
#[tokio::test]
async fn a_password_change_inside_a_refresh_ends_it() {
    let Some(db) = TestDb::new(crate::support::Backend::Postgres) else {
        return;
    };
    let app = spawn_app_with(db, |s| s.auth.revocation_cache_ms = 0).await;
    app.create_user(EMAIL, PASSWORD).await;
    for change in [change_password, revoke_sessions] {
        let (_, token) = login(&app).await;
        once_at(&app, Point::RefreshClaimed, change);
        assert_invalid_grant(refresh(&app, &token).await).await;
        app.served.hooks.clear(Point::RefreshClaimed);
        let services = app.services.clone();
        tokio::task::spawn_blocking(move || services.auth.set_password(EMAIL, PASSWORD.into()))
            .await
            .unwrap()
            .unwrap();
    }
}

/// A refresh refused for its scopes leaves its token current: the retry is not taken for
/// theft.
async fn a_refused_refresh_leaves_its_token_current(db: TestDb) {
    // No grace: a token used up by the refusal would answer the retry as reuse.
    let app = spawn_app_with(db, |s| s.auth.refresh_reuse_grace_secs = 0).await;
    app.create_user_with_role(EMAIL, PASSWORD, Role::Editor)
        .await;
    let response = app
        .post_token(&[
            ("username", EMAIL),
            ("password", PASSWORD),
            ("scope", "movies:read movies:write"),
        ])
        .await;
    let (_, token) = tokens(json_body(response, 200, "application/json").await);
    let services = app.services.clone();
    tokio::task::spawn_blocking(move || services.auth.set_role(EMAIL, Role::Reader))
        .await
        .unwrap()
        .unwrap();
    let narrowed = app
        .post_token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &token),
            ("scope", "movies:write"),
        ])
        .await;
    let body = json_body(narrowed, 400, "application/json").await;
    assert_eq!(body["error"], "invalid_scope", "{body}");
    let retried = json_body(refresh(&app, &token).await, 200, "application/json").await;
    assert_eq!(retried["scope"], "movies:read", "{retried}");
}
both_backends!(a_refused_refresh_leaves_its_token_current);

async fn password_change_and_revoke_sessions_end_refreshing(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_user(EMAIL, PASSWORD).await;
    let (_, before_change) = login(&app).await;
    let services = app.services.clone();
    tokio::task::spawn_blocking(move || services.auth.set_password(EMAIL, "a-new-password".into()))
        .await
        .unwrap()
        .unwrap();
    assert_invalid_grant(refresh(&app, &before_change).await).await;

    let response = app
        .post_token(&[("username", EMAIL), ("password", "a-new-password")])
        .await;
    let (_, current) = tokens(json_body(response, 200, "application/json").await);
    let services = app.services.clone();
    tokio::task::spawn_blocking(move || services.auth.revoke_sessions(EMAIL))
        .await
        .unwrap()
        .unwrap();
    assert_invalid_grant(refresh(&app, &current).await).await;

    let services = app.services.clone();
    let purged = tokio::task::spawn_blocking(move || services.auth.purge_sessions())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(purged, 2, "both revoked families are gone");
}
both_backends!(password_change_and_revoke_sessions_end_refreshing);

async fn revocation_answers_as_rfc_7009_says(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_user(EMAIL, PASSWORD).await;
    let (access, refresh_token) = login(&app).await;
    let revoke = |form: Vec<(&'static str, String)>| {
        let request = app.client.post(app.url("/revoke")).form(&form);
        async move { request.send().await.unwrap() }
    };

    let access_token = revoke(vec![("token", access.clone())]).await;
    let body = json_body(access_token, 400, "application/json").await;
    assert_eq!(body["error"], "unsupported_token_type");
    let missing = revoke(vec![("token_type_hint", "refresh_token".into())]).await;
    assert_eq!(
        json_body(missing, 400, "application/json").await["error"],
        "invalid_request"
    );
    let not_a_form = app
        .client
        .post(app.url("/revoke"))
        .json(&serde_json::json!({"token": refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_body(not_a_form, 400, "application/json").await["error"],
        "invalid_request"
    );

    let revoked = revoke(vec![
        ("token", refresh_token.clone()),
        ("token_type_hint", "refresh_token".into()),
    ])
    .await;
    assert_eq!(revoked.status(), 200);
    assert_invalid_grant(refresh(&app, &refresh_token).await).await;
    assert_eq!(
        revoke(vec![("token", refresh_token)]).await.status(),
        200,
        "already revoked"
    );
    assert_eq!(
        revoke(vec![("token", "unknown".into())]).await.status(),
        200,
        "unknown"
    );
    // The session's access token ends with it, at once on the instance that revoked it.
    assert_eq!(app.get_authed("/users/me", &access).await.status(), 401);
}
both_backends!(revocation_answers_as_rfc_7009_says);

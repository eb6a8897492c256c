//! Refresh tokens (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2), and
//! revocation (RFC 7009), on both backends over HTTP.

use std::time::Duration;

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

/// Two refreshes of one token in flight at once: exactly one wins. Within the grace period
/// the loser does not revoke the family, so the winner's token goes on working.
async fn racing_refreshes_have_one_winner(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_user(EMAIL, PASSWORD).await;
    for _ in 0..5 {
        let (_, token) = login(&app).await;
        let (a, b) = tokio::join!(refresh(&app, &token), refresh(&app, &token));
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 400]);
        let winner = if a.status() == 200 { a } else { b };
        let (_, next) = tokens(winner.json().await.unwrap());
        assert_eq!(
            refresh(&app, &next).await.status(),
            200,
            "the family lives on"
        );
    }
}
both_backends!(racing_refreshes_have_one_winner);

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
    assert_eq!(app.get_authed("/users/me", &access).await.status(), 200);
}
both_backends!(revocation_answers_as_rfc_7009_says);

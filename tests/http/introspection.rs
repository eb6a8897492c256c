//! RFC 7662 introspection (`POST /introspect`), and how fast a revoked session's access
//! tokens stop working: at once for introspection, within `auth.revocation_cache_ms` for
//! the bearer check of every instance, at once on the instance that revoked it.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use myapi_services::auth::Role;
use serde_json::json;

use crate::support::{TEST_TOKEN_KEY, TestDb};
use crate::{TestApp, both_backends, json_body, spawn_app_with};

const READER: &str = "reader@example.com";
const ADMIN: &str = "admin@example.com";
const PASSWORD: &str = "correct-horse-battery";
/// The bearer check's window in these tests (`auth.revocation_cache_ms`).
const WINDOW: Duration = Duration::from_millis(300);

/// Logs `email` in on `address`; returns (access token, refresh token).
async fn login(app: &TestApp, address: &str, email: &str) -> (String, String) {
    let response = app
        .client
        .post(format!("{address}/token"))
        .form(&[("username", email), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let body = json_body(response, 200, "application/json").await;
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn post_introspect(
    app: &TestApp,
    caller: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app.client.post(app.url("/introspect")).form(form);
    if let Some(caller) = caller {
        request = request.bearer_auth(caller);
    }
    request.send().await.unwrap()
}

/// The introspection of `token`, asked by `caller`.
async fn introspect(app: &TestApp, caller: &str, token: &str) -> serde_json::Value {
    let response = post_introspect(app, Some(caller), &[("token", token)]).await;
    assert_eq!(
        response.headers()["cache-control"].to_str().unwrap(),
        "no-store"
    );
    json_body(response, 200, "application/json").await
}

async fn assert_inactive(app: &TestApp, caller: &str, token: &str, why: &str) {
    let answer = introspect(app, caller, token).await;
    assert_eq!(answer, json!({"active": false}), "{why}");
}

async fn users_me(app: &TestApp, address: &str, token: &str) -> u16 {
    app.client
        .get(format!("{address}/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn claims(token: &str) -> serde_json::Value {
    jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
        .unwrap()
        .claims
}

/// `token` with `change` made to its claims, signed again with the test key.
fn resigned(token: &str, change: impl FnOnce(&mut serde_json::Value)) -> String {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let mut claims = claims(token);
    change(&mut claims);
    jsonwebtoken::encode(
        &Header { ..header },
        &claims,
        &EncodingKey::from_secret(TEST_TOKEN_KEY.as_bytes()),
    )
    .unwrap()
}

async fn introspection_answers_as_rfc_7662_says(db: TestDb) {
    let app = spawn_app_with(db, |_| {}).await;
    app.create_user(READER, PASSWORD).await;
    app.create_user_with_role(ADMIN, PASSWORD, Role::Admin)
        .await;
    let (admin, _) = login(&app, &app.address, ADMIN).await;
    let (access, refresh) = login(&app, &app.address, READER).await;

    // The caller needs a token, and one with `tokens:introspect`, which only admins get.
    let anonymous = post_introspect(&app, None, &[("token", &access)]).await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let reader = post_introspect(&app, Some(&access), &[("token", &access)]).await;
    assert_eq!(reader.status(), 403);
    assert_eq!(
        reader.headers()["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="tokens:introspect""#
    );
    assert!(
        claims(&admin)["scope"]
            .as_str()
            .unwrap()
            .contains("tokens:introspect")
    );

    // An active access token: what it stands for.
    let answer = introspect(&app, &admin, &access).await;
    let issued = claims(&access);
    assert_eq!(
        answer,
        json!({
            "active": true,
            "scope": issued["scope"],
            "client_id": "myapi",
            "username": READER,
            "token_type": "Bearer",
            "exp": issued["exp"],
            "iat": issued["iat"],
            "sub": issued["sub"],
            "aud": issued["aud"],
            "iss": issued["iss"],
            "jti": issued["jti"],
            "sid": issued["sid"],
        })
    );

    // An active refresh token: its session's.
    let answer = introspect(&app, &admin, &refresh).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["token_type"], "refresh_token");
    assert_eq!(answer["sid"], issued["sid"]);
    assert_eq!(answer["sub"], issued["sub"]);
    assert_eq!(answer["username"], READER);
    assert_eq!(answer["client_id"], "myapi");
    assert_eq!(answer["scope"], issued["scope"]);
    assert_eq!(answer["iss"], issued["iss"]);
    assert!(answer["exp"].as_i64().unwrap() > issued["exp"].as_i64().unwrap());
    assert!(answer.get("aud").is_none() && answer.get("jti").is_none());

    // Inactive: unknown, forged, expired, not yet valid, and a used refresh token. The
    // token_type_hint changes nothing.
    let expired = resigned(&access, |c| {
        c["iat"] = (c["iat"].as_i64().unwrap() - 7200).into();
        c["exp"] = (c["iat"].as_i64().unwrap() + 60).into();
    });
    assert_eq!(users_me(&app, &app.address, &expired).await, 401);
    let (signed, _) = access.rsplit_once('.').unwrap();
    let forged = format!("{signed}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    for (token, why) in [
        ("not-a-token", "unknown"),
        ("eyJhbGciOiJIUzI1NiJ9.e30.AAAA", "malformed JWT"),
        (forged.as_str(), "forged"),
        (expired.as_str(), "expired"),
    ] {
        assert_inactive(&app, &admin, token, why).await;
    }
    let hinted = post_introspect(
        &app,
        Some(&admin),
        &[("token", &access), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(
        json_body(hinted, 200, "application/json").await["active"],
        true
    );
    let refreshed = app
        .post_token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .await;
    let refreshed = json_body(refreshed, 200, "application/json").await;
    assert_inactive(&app, &admin, &refresh, "a used refresh token").await;
    let next = refreshed["refresh_token"].as_str().unwrap();
    assert_eq!(introspect(&app, &admin, next).await["active"], true);
    assert_eq!(
        introspect(&app, &admin, &access).await["active"],
        true,
        "a refresh does not end the session's earlier access tokens"
    );

    // Malformed requests: OAuth-style 400s.
    for form in [
        &[][..],
        &[("token", "")][..],
        &[("token", "a"), ("token", "b")][..],
    ] {
        let response = post_introspect(&app, Some(&admin), form).await;
        let body = json_body(response, 400, "application/json").await;
        assert_eq!(body["error"], "invalid_request", "{form:?}");
    }
    let json_body_sent = app
        .client
        .post(app.url("/introspect"))
        .bearer_auth(&admin)
        .json(&json!({"token": access}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body_sent.status(), 400);

    // The metadata names the endpoint.
    let metadata: serde_json::Value = app
        .client
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["introspection_endpoint"],
        format!("{}/introspect", metadata["issuer"].as_str().unwrap())
    );
}
both_backends!(introspection_answers_as_rfc_7662_says);

/// `/revoke` of a refresh token, reuse detection, `revoke-sessions` and a password change:
/// introspection says `active: false` at once for every access token of the session (or
/// user); the instance that revoked refuses them at once and another instance within the
/// window; other sessions of the user carry on.
async fn revoked_sessions_end_their_access_tokens(db: TestDb) {
    let tweak = |s: &mut myapi_services::Settings| {
        s.auth.revocation_cache_ms = WINDOW.as_millis().try_into().unwrap();
        s.auth.refresh_reuse_grace_secs = 0;
    };
    let app = spawn_app_with(db, tweak).await;
    let other = app.start_instance(tweak).await;
    app.create_user(READER, PASSWORD).await;
    app.create_user_with_role(ADMIN, PASSWORD, Role::Admin)
        .await;
    let (admin, _) = login(&app, &app.address, ADMIN).await;
    let (revoked, revoked_refresh) = login(&app, &app.address, READER).await;
    let (kept, _) = login(&app, &other, READER).await;
    // Both instances have checked both sessions: what they remember is now stale.
    for address in [&app.address, &other] {
        for token in [&revoked, &kept] {
            assert_eq!(users_me(&app, address, token).await, 200);
        }
    }

    let response = app
        .client
        .post(app.url("/revoke"))
        .form(&[("token", revoked_refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_inactive(&app, &admin, &revoked, "revoked with /revoke").await;
    assert_eq!(introspect(&app, &admin, &kept).await["active"], true);
    assert_eq!(
        users_me(&app, &app.address, &revoked).await,
        401,
        "the revoking instance refuses at once"
    );
    tokio::time::sleep(WINDOW + Duration::from_millis(100)).await;
    assert_eq!(
        users_me(&app, &other, &revoked).await,
        401,
        "within the window"
    );
    for address in [&app.address, &other] {
        assert_eq!(users_me(&app, address, &kept).await, 200, "another session");
    }

    // Reuse detection revokes the session, its access tokens from before the theft too.
    let (before, stolen) = login(&app, &app.address, READER).await;
    let rotated = app
        .post_token(&[("grant_type", "refresh_token"), ("refresh_token", &stolen)])
        .await;
    let after = json_body(rotated, 200, "application/json").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reused = app
        .post_token(&[("grant_type", "refresh_token"), ("refresh_token", &stolen)])
        .await;
    assert_eq!(reused.status(), 400);
    for token in [&before, &after] {
        assert_inactive(&app, &admin, token, "reuse detected").await;
        assert_eq!(users_me(&app, &app.address, token).await, 401);
    }

    // `revoke-sessions` ends every session of the user, then a password change does.
    let services = app.services.clone();
    tokio::task::spawn_blocking(move || services.auth.revoke_sessions(READER))
        .await
        .unwrap()
        .unwrap();
    assert_inactive(&app, &admin, &kept, "revoke-sessions").await;
    let (again, _) = login(&app, &other, READER).await;
    assert_eq!(introspect(&app, &admin, &again).await["active"], true);
    let services = app.services.clone();
    tokio::task::spawn_blocking(move || services.auth.set_password(READER, "another-one".into()))
        .await
        .unwrap()
        .unwrap();
    assert_inactive(&app, &admin, &again, "password changed").await;
    tokio::time::sleep(WINDOW + Duration::from_millis(100)).await;
    for address in [&app.address, &other] {
        for token in [&kept, &again] {
            assert_eq!(users_me(&app, address, token).await, 401);
        }
    }
    assert_eq!(introspect(&app, &admin, &admin).await["active"], true);
}
both_backends!(revoked_sessions_end_their_access_tokens);

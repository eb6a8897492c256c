//! Roles and OAuth2 scopes (RFC 6749 §3.3, RFC 6750 §3.1) over HTTP on both backends: what
//! `/token` grants, the 403 for a missing scope, and a role change reaching live tokens.

use std::time::Duration;

use myapi_services::auth::{Role, SCOPES};

use crate::support::TestDb;
use crate::{TestApp, both_backends, json_body, spawn_app_with};

const PASSWORD: &str = "correct-horse-battery";

async fn ask(app: &TestApp, email: &str, scope: Option<&str>) -> reqwest::Response {
    let mut form = vec![("username", email), ("password", PASSWORD)];
    form.extend(scope.map(|scope| ("scope", scope)));
    app.post_token(&form).await
}

async fn token_for(app: &TestApp, email: &str, scope: Option<&str>) -> (String, serde_json::Value) {
    let body = json_body(ask(app, email, scope).await, 200, "application/json").await;
    (body["access_token"].as_str().unwrap().to_owned(), body)
}

async fn scope_requests_are_granted_what_the_role_allows(db: TestDb) {
    let app = spawn_app_with(db, |_| {}).await;
    app.create_user("reader@example.com", PASSWORD).await;
    let reader = "reader@example.com";

    // Nothing asked (or only other systems' scopes, or an empty `scope=` as Swagger UI sends):
    // everything the role allows, and the response says what that is.
    for scope in [None, Some(""), Some("openid profile")] {
        let (_, body) = token_for(&app, reader, scope).await;
        let all_a_reader_may = Role::Reader.scopes().to_string();
        assert_eq!(body["scope"], all_a_reader_may.as_str(), "{scope:?}");
    }
    // Scopes are granted by name: `users:read`, `audit:read` and `tokens:introspect` are an
    // admin's alone.
    app.create_user_with_role("admin@example.com", PASSWORD, Role::Admin)
        .await;
    let (_, body) = token_for(&app, "admin@example.com", None).await;
    let granted: Vec<&str> = body["scope"].as_str().unwrap().split(' ').collect();
    for scope in [
        "audit:read",
        "movies:read",
        "movies:write",
        "tokens:introspect",
        "users:read",
    ] {
        assert!(granted.contains(&scope), "{body}");
    }
    for scope in ["users:read", "audit:read", "tokens:introspect"] {
        let response = ask(&app, reader, Some(scope)).await;
        let body = json_body(response, 400, "application/json").await;
        assert_eq!(body["error"], "invalid_scope", "{scope}");
    }
    // Asked and granted exactly: no `scope` in the response.
    let (token, body) = token_for(&app, reader, Some("movies:read")).await;
    assert!(body.get("scope").is_none(), "{body}");
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&token)
        .unwrap()
        .claims;
    assert_eq!(claims["scope"], "movies:read");
    // Asked for more than the role allows: narrowed, and said so.
    let (_, body) = token_for(&app, reader, Some("movies:read movies:write")).await;
    assert_eq!(body["scope"], "movies:read");
    // Nothing the role allows, or an unknown scope: invalid_scope.
    for scope in ["movies:write", "movies:delete"] {
        let response = ask(&app, reader, Some(scope)).await;
        let body = json_body(response, 400, "application/json").await;
        assert_eq!(body["error"], "invalid_scope", "{scope}");
    }
}
both_backends!(scope_requests_are_granted_what_the_role_allows);

/// RFC 6749 §5.2: `error_description` holds printable ASCII without `"` and `\`, so an
/// unknown scope is echoed with every other character as `?`.
async fn an_unknown_scope_is_echoed_only_as_rfc_6749_allows(db: TestDb) {
    let app = spawn_app_with(db, |_| {}).await;
    app.create_user("reader@example.com", PASSWORD).await;
    let response = ask(
        &app,
        "reader@example.com",
        Some("movies:\u{fc}nknown\"\\x\u{1}"),
    )
    .await;
    let body = json_body(response, 400, "application/json").await;
    assert_eq!(body["error"], "invalid_scope");
    assert_eq!(
        body["error_description"],
        "unknown scope `movies:?nknown??x?`"
    );
}
both_backends!(an_unknown_scope_is_echoed_only_as_rfc_6749_allows);

async fn routes_require_their_scope(db: TestDb) {
    let app = spawn_app_with(db, |_| {}).await;
    app.create_user("reader@example.com", PASSWORD).await;
    app.create_user_with_role("admin@example.com", PASSWORD, Role::Admin)
        .await;
    for i in 0..3 {
        app.create_user(&format!("user{i}@example.com"), PASSWORD)
            .await;
    }
    let (reader, _) = token_for(&app, "reader@example.com", None).await;
    let denied = app.get_authed("/users/", &reader).await;
    assert_eq!(
        denied.headers()["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="users:read""#
    );
    let body = json_body(denied, 403, "application/problem+json").await;
    assert_eq!(body["status"], 403);
    assert_eq!(app.get_authed("/users/me", &reader).await.status(), 200);

    // An admin's token narrowed to movies:read cannot list users either.
    let (narrowed, _) = token_for(&app, "admin@example.com", Some("movies:read")).await;
    assert_eq!(app.get_authed("/users/", &narrowed).await.status(), 403);

    let (admin, _) = token_for(&app, "admin@example.com", None).await;
    let first = app.get_authed("/users/?limit=2", &admin).await;
    let link = first.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(link, r#"</users/?limit=2&offset=2>; rel="next""#);
    let users = json_body(first, 200, "application/json").await;
    assert_eq!(users[0]["role"], "reader");
    assert_eq!(users[1]["role"], "admin");
    let last = app.get_authed("/users/?limit=2&offset=4", &admin).await;
    assert!(!last.headers().contains_key("link"));
    assert_eq!(
        json_body(last, 200, "application/json")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let bad = app.get_authed("/users/?limit=0", &admin).await;
    json_body(bad, 422, "application/problem+json").await;
}
both_backends!(routes_require_their_scope);

/// Routes without a token that answer 403 until a setting turns them on.
const OFF_BY_DEFAULT: [&str; 3] = [
    "POST /users/",
    "POST /password-reset",
    "POST /password-reset/confirm",
];

/// Every operation of the OpenAPI document against what its handler enforces: one documented
/// with the oauth2 scope `S` answers 403 naming `S` to a token with every other scope, and
/// neither 401 nor 403 to one with `S` alone; one documented without scopes takes any
/// token; a public one takes none. Routes a scaffold adds are checked too.
async fn every_route_enforces_the_scope_it_documents(db: TestDb) {
    let app = spawn_app_with(db, |_| {}).await;
    let admin = "admin@example.com";
    app.create_user_with_role(admin, PASSWORD, Role::Admin)
        .await;
    let document = app.openapi_document().await;
    let call = |method: &str, path: &str, token: Option<&str>| {
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let request = app.client.request(method, app.url(path));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send()
    };
    let mut checked = Vec::new();
    for (template, operations) in document["paths"].as_object().unwrap() {
        // Every path parameter is an id here; 1 will do (a 404 is still past the check).
        let path = template
            .split('/')
            .map(|part| if part.starts_with('{') { "1" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        for (method, operation) in operations.as_object().unwrap() {
            let route = format!("{} {template}", method.to_uppercase());
            let required: Option<Vec<&str>> = operation["security"].as_array().map(|all| {
                all.iter()
                    .filter_map(|requirement| requirement["oauth2"].as_array())
                    .flatten()
                    .filter_map(|scope| scope.as_str())
                    .collect()
            });
            match required.as_deref() {
                // Off by default (`auth.registration`, `auth.password_reset`): 403 problem.
                None if OFF_BY_DEFAULT.contains(&route.as_str()) => {
                    let status = call(method, &path, None).await.unwrap().status();
                    assert_eq!(status, 403, "{route}");
                }
                None => {
                    let status = call(method, &path, None).await.unwrap().status();
                    assert!(![401, 403].contains(&status.as_u16()), "{route}: {status}");
                }
                Some([]) => {
                    let (token, _) = token_for(&app, admin, Some(SCOPES[0])).await;
                    let status = call(method, &path, Some(&token)).await.unwrap().status();
                    assert!(![401, 403].contains(&status.as_u16()), "{route}: {status}");
                }
                Some([scope]) => {
                    let others: Vec<&str> = SCOPES.iter().copied().filter(|s| s != scope).collect();
                    let (token, _) = token_for(&app, admin, Some(&others.join(" "))).await;
                    let denied = call(method, &path, Some(&token)).await.unwrap();
                    assert_eq!(denied.status(), 403, "{route} without {scope}");
                    assert_eq!(
                        denied.headers()["www-authenticate"],
                        format!(r#"Bearer error="insufficient_scope", scope="{scope}""#).as_str(),
                        "{route}"
                    );
                    let (token, _) = token_for(&app, admin, Some(scope)).await;
                    let status = call(method, &path, Some(&token)).await.unwrap().status();
                    assert!(![401, 403].contains(&status.as_u16()), "{route}: {status}");
                }
                Some(more) => panic!("{route} documents several scopes: {more:?}"),
            }
            checked.push(route);
        }
    }
    assert!(checked.len() >= 12, "only {checked:?}");
}
both_backends!(every_route_enforces_the_scope_it_documents);

/// A role change narrows live tokens within the revocation window, like a password change.
async fn a_role_change_reaches_live_tokens(db: TestDb) {
    let app = spawn_app_with(db, |s| s.auth.revocation_cache_ms = 200).await;
    app.create_user_with_role("admin@example.com", PASSWORD, Role::Admin)
        .await;
    let (admin, _) = token_for(&app, "admin@example.com", None).await;
    assert_eq!(app.get_authed("/users/", &admin).await.status(), 200);
    let services = app.services.clone();
    tokio::task::spawn_blocking(move || services.auth.set_role("admin@example.com", Role::Reader))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get_authed("/users/", &admin).await.status(), 403);
    assert_eq!(app.get_authed("/users/me", &admin).await.status(), 200);
}
both_backends!(a_role_change_reaches_live_tokens);

/// A refresh may narrow the login's scopes, never widen them.
async fn refreshes_only_narrow(db: TestDb) {
    let app = spawn_app_with(db, |_| {}).await;
    app.create_user_with_role("admin@example.com", PASSWORD, Role::Admin)
        .await;
    let (_, login) = token_for(&app, "admin@example.com", Some("movies:read users:read")).await;
    let refresh = |token: String, scope: &'static str| {
        let form = [
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", token),
            ("scope", scope.to_owned()),
        ];
        let request = app.client.post(app.url("/token")).form(&form);
        async move { request.send().await.unwrap() }
    };
    let refresh_token = login["refresh_token"].as_str().unwrap().to_owned();
    let wider = refresh(refresh_token.clone(), "movies:write").await;
    assert_eq!(
        json_body(wider, 400, "application/json").await["error"],
        "invalid_scope"
    );
    let narrower = refresh(refresh_token, "users:read").await;
    let body = json_body(narrower, 200, "application/json").await;
    assert!(body.get("scope").is_none(), "granted as asked: {body}");
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(
        body["access_token"].as_str().unwrap(),
    )
    .unwrap()
    .claims;
    assert_eq!(claims["scope"], "users:read");
}
both_backends!(refreshes_only_narrow);

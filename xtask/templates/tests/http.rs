use crate::support::TestDb;
use crate::{both_backends, json_body, spawn_app};

async fn __NAME___are_served_behind_auth(db: TestDb) {
    let app = spawn_app(db).await;
    for path in ["/__NAME__/", "/__NAME__/1"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
    // A reader's token with nothing asked carries `__NAME__:read`: the scaffold grants readers it.
    let token = app.login_new_user("__NAME__@example.com").await;
    let page = json_body(app.get_authed("/__NAME__/", &token).await, 200, "application/json").await;
    assert_eq!(page, serde_json::json!([]));
    for (path, status) in [
        ("/__NAME__/1", 404),
        ("/__NAME__/abc", 422),
        ("/__NAME__/?limit=0", 422),
    ] {
        let response = app.get_authed(path, &token).await;
        json_body(response, status, "application/problem+json").await;
    }

    // A token narrowed to another scope is refused (RFC 6750 §3.1).
    let response = app
        .post_token(&[
            ("grant_type", "password"),
            ("username", "__NAME__@example.com"),
            ("password", "correct-horse-battery"),
            ("scope", "movies:read"),
        ])
        .await;
    let body = json_body(response, 200, "application/json").await;
    let narrowed = body["access_token"].as_str().unwrap();
    for path in ["/__NAME__/", "/__NAME__/1"] {
        let response = app.get_authed(path, narrowed).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer error="insufficient_scope", scope="__NAME__:read""#,
            "{path}"
        );
        json_body(response, 403, "application/problem+json").await;
    }
}
both_backends!(__NAME___are_served_behind_auth);

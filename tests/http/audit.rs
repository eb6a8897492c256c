//! The audit trail (#21) over HTTP on both backends: every web event is recorded with its
//! client and request id, unknown usernames only as a digest, throttled answers as a count,
//! and `GET /audit/` pages, filters and requires `audit:read`.

use std::collections::HashMap;
use std::time::Duration;

use myapi_services::auth::Role;
use serde_json::Value;

use crate::support::TestDb;
use crate::{TestApp, both_backends, json_body, spawn_app_with};

const PASSWORD: &str = "correct-horse-battery";
const ADA: &str = "ada@example.com";
const ADMIN: &str = "admin@example.com";
/// What someone typed into the username field: it must never be stored.
const TYPED_SECRET: &str = "Hunter2-Secret-Typed-Here";

/// `POST /token` (password grant); returns the response's request id and body.
async fn login(app: &TestApp, username: &str, password: &str) -> (u16, String, Value) {
    let response = app
        .post_token(&[("username", username), ("password", password)])
        .await;
    let status = response.status().as_u16();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, request_id, response.json().await.unwrap())
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_token(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .await
}

/// Every event `GET /audit/?query` returns, following `Link` to the last page.
async fn all_events(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut next = Some(format!("/audit/?{query}"));
    while let Some(path) = next.take() {
        let response = app.get_authed(&path, token).await;
        next = response.headers().get("link").map(|link| {
            let link = link.to_str().unwrap();
            assert!(link.ends_with(">; rel=\"next\""), "{link}");
            link[1..link.find('>').unwrap()].to_owned()
        });
        let page = json_body(response, 200, "application/json").await;
        events.extend(page.as_array().unwrap().iter().cloned());
    }
    events
}

fn of_kind<'a>(events: &'a [Value], event: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == event).collect()
}

fn one_of_kind<'a>(events: &'a [Value], event: &str) -> &'a Value {
    let found = of_kind(events, event);
    assert_eq!(found.len(), 1, "{event}: {events:#?}");
    found[0]
}

async fn user_id(app: &TestApp, email: &str) -> i64 {
    let services = app.services.clone();
    let email = email.to_owned();
    let users = tokio::task::spawn_blocking(move || services.auth.list_users())
        .await
        .unwrap()
        .unwrap();
    i64::from(users.iter().find(|u| u.email == email).unwrap().user_id)
}

async fn every_web_event_is_recorded(db: TestDb) {
    let app = spawn_app_with(db, |s| {
        s.auth.refresh_reuse_grace_secs = 0;
        s.auth.account_failure_burst = 3.try_into().unwrap();
    })
    .await;
    app.create_user(ADA, PASSWORD).await;
    app.create_user_with_role(ADMIN, PASSWORD, Role::Admin)
        .await;
    app.create_user_with_role("editor@example.com", PASSWORD, Role::Editor)
        .await;
    let ada = user_id(&app, ADA).await;

    // Login success, and failures for a known and two unknown accounts.
    let (status, succeeded_id, body) = login(&app, ADA, PASSWORD).await;
    assert_eq!(status, 200);
    let first_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, wrong_password_id, _) = login(&app, ADA, "not-the-password").await;
    assert_eq!(status, 400);
    let (status, _, _) = login(&app, TYPED_SECRET, "whatever-password").await;
    assert_eq!(status, 400);
    let (status, _, _) = login(&app, "Ghost@Example.com", "whatever-password").await;
    assert_eq!(status, 400);

    // /revoke of a live refresh token: the token's revocation and its family's.
    let (_, revoke_id, body) = login(&app, ADA, PASSWORD).await;
    let revoked = app
        .client
        .post(app.url("/revoke"))
        .form(&[("token", body["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let revoke_request = revoked.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(revoke_request, revoke_id);

    // A rotated refresh token shown again after the grace period.
    assert_eq!(refresh(&app, &first_refresh).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reused = refresh(&app, &first_refresh).await;
    assert_eq!(reused.status(), 400);

    // Throttled: an account's budget of 3 failures, then four 429s.
    for _ in 0..3 {
        assert_eq!(
            login(&app, "victim@example.com", "guess-guess").await.0,
            400
        );
    }
    for _ in 0..4 {
        assert_eq!(
            login(&app, "victim@example.com", "guess-guess").await.0,
            429
        );
    }

    let (_, _, body) = login(&app, ADMIN, PASSWORD).await;
    let admin = body["access_token"].as_str().unwrap().to_owned();
    let events = all_events(&app, &admin, "limit=3").await;
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "by id: {ids:?}");

    // Users created through the service tier: the CLI's actor.
    let created = of_kind(&events, "user_created");
    assert_eq!(created.len(), 3);
    assert_eq!(created[0]["actor"], "cli");
    assert_eq!(created[0]["subject"], ADA);
    assert_eq!(created[0]["subject_user_id"], ada);
    assert_eq!(created[0]["detail"], "reader");

    let succeeded: Vec<&Value> = of_kind(&events, "login_succeeded")
        .into_iter()
        .filter(|e| e["subject"] == ADA)
        .collect();
    assert_eq!(succeeded.len(), 2);
    let success = succeeded[0];
    assert_eq!(success["actor"], ada.to_string());
    assert_eq!(success["subject_user_id"], ada);
    assert_eq!(success["client"], "127.0.0.1");
    assert_eq!(success["request_id"], succeeded_id.as_str());
    assert_eq!(success["count"], 1);
    assert_eq!(
        success["detail"],
        Role::Reader.scopes().to_string().as_str()
    );
    assert!(success["at"].as_str().unwrap().ends_with('Z'), "{success}");

    let failed = of_kind(&events, "login_failed");
    assert_eq!(failed.len(), 6, "{failed:#?}");
    assert_eq!(failed[0]["actor"], "anonymous");
    assert_eq!(failed[0]["subject"], ADA);
    assert_eq!(failed[0]["subject_user_id"], ada);
    assert_eq!(failed[0]["request_id"], wrong_password_id.as_str());
    // Unknown accounts: a digest of the normalised username, never the text.
    assert_eq!(
        failed[1]["subject"],
        app.services
            .auth
            .username_digest(&TYPED_SECRET.to_lowercase())
    );
    assert_eq!(failed[1]["subject_user_id"], Value::Null);
    assert_eq!(
        failed[2]["subject"],
        app.services.auth.username_digest("ghost@example.com")
    );
    let everything = serde_json::to_string(&events).unwrap().to_lowercase();
    assert!(!everything.contains("hunter2"), "{everything}");
    assert!(!everything.contains("ghost"), "{everything}");

    let token_revoked = one_of_kind(&events, "token_revoked");
    assert_eq!(token_revoked["actor"], ada.to_string());
    assert_eq!(token_revoked["subject"], ADA);
    assert_eq!(token_revoked["request_id"], revoke_request.as_str());
    let family_revocations = of_kind(&events, "family_revoked");
    assert_eq!(family_revocations.len(), 2, "by /revoke and by reuse");
    assert_eq!(family_revocations[0]["request_id"], revoke_request.as_str());

    let reuse = one_of_kind(&events, "refresh_reuse_detected");
    assert_eq!(reuse["actor"], "anonymous");
    assert_eq!(reuse["subject_user_id"], ada);
    assert_eq!(reuse["subject"], ADA);
    assert_eq!(reuse["client"], "127.0.0.1");
    assert_eq!(family_revocations[1]["request_id"], reuse["request_id"]);
    assert_eq!(
        family_revocations[1]["id"].as_i64(),
        reuse["id"].as_i64().map(|id| id + 1),
        "recorded together"
    );

    // Four 429s: one row per network and minute (two if a minute ended between them).
    let throttled = of_kind(&events, "login_throttled");
    assert!(matches!(throttled.len(), 1 | 2), "{throttled:#?}");
    let counts: Vec<i64> = throttled
        .iter()
        .map(|e| e["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), 4, "{throttled:#?}");
    assert!(counts.iter().any(|count| *count > 1), "{throttled:#?}");
    for row in &throttled {
        assert_eq!(row["client"], "127.0.0.1/32");
        assert_eq!(row["detail"], "429 /token");
        assert_eq!(row["request_id"], Value::Null);
        assert!(row["at"].as_str().unwrap().ends_with(":00Z"), "{row}");
    }
    // Read again: the counts are not written twice.
    let again = all_events(&app, &admin, "event=login_throttled").await;
    assert_eq!(
        again
            .iter()
            .map(|e| e["count"].as_i64().unwrap())
            .sum::<i64>(),
        4
    );

    // Filters, and the cursor keeps them.
    let about_ada = all_events(&app, &admin, &format!("user={ada}&limit=2")).await;
    assert!(about_ada.iter().all(|e| e["subject_user_id"] == ada));
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for event in &about_ada {
        *kinds
            .entry(event["event"].as_str().unwrap().into())
            .or_default() += 1;
    }
    assert_eq!(kinds["login_failed"], 1);
    assert_eq!(kinds["login_succeeded"], 2);
    let first = app
        .get_authed(
            &format!("/audit/?user={ada}&event=login_succeeded&limit=1"),
            &admin,
        )
        .await;
    let link = first.headers()["link"].to_str().unwrap().to_owned();
    let first = json_body(first, 200, "application/json").await;
    assert_eq!(
        link,
        format!(
            "</audit/?user={ada}&event=login_succeeded&limit=1&after={}>; rel=\"next\"",
            first[0]["id"]
        )
    );

    // Deleting a user keeps their trail, and adds to it.
    let services = app.services.clone();
    tokio::task::spawn_blocking(move || services.auth.delete_user(ADA))
        .await
        .unwrap()
        .unwrap();
    let after_delete = all_events(&app, &admin, &format!("user={ada}")).await;
    assert_eq!(after_delete.len(), about_ada.len() + 1);
    let deleted = one_of_kind(&after_delete, "user_deleted");
    assert_eq!(deleted["subject"], ADA);
    assert_eq!(deleted["actor"], "cli");
}
both_backends!(every_web_event_is_recorded);

async fn the_trail_is_for_admins_and_checks_its_query(db: TestDb) {
    let app = spawn_app_with(db, |_| {}).await;
    app.create_user("reader@example.com", PASSWORD).await;
    app.create_user_with_role("editor@example.com", PASSWORD, Role::Editor)
        .await;
    app.create_user_with_role(ADMIN, PASSWORD, Role::Admin)
        .await;
    assert_eq!(
        app.client
            .get(app.url("/audit/"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    for email in ["reader@example.com", "editor@example.com"] {
        let (_, _, body) = login(&app, email, PASSWORD).await;
        assert!(
            !body["scope"].as_str().unwrap().contains("audit:read"),
            "{body}"
        );
        let denied = app
            .get_authed("/audit/", body["access_token"].as_str().unwrap())
            .await;
        assert_eq!(
            denied.headers()["www-authenticate"],
            r#"Bearer error="insufficient_scope", scope="audit:read""#
        );
        json_body(denied, 403, "application/problem+json").await;
    }
    let (_, _, body) = login(&app, ADMIN, PASSWORD).await;
    let admin = body["access_token"].as_str().unwrap();
    let events = json_body(
        app.get_authed("/audit/", admin).await,
        200,
        "application/json",
    )
    .await;
    assert_eq!(
        events.as_array().unwrap().len(),
        6,
        "3 users created, 3 logins"
    );

    let bad = app
        .get_authed("/audit/?event=login&limit=0&user=x&after=-1", admin)
        .await;
    let problem = json_body(bad, 422, "application/problem+json").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["after", "user", "event", "limit"]);

    // An admin token narrowed to other scopes cannot read the trail.
    let response = app
        .post_token(&[
            ("username", ADMIN),
            ("password", PASSWORD),
            ("scope", "users:read"),
        ])
        .await;
    let body = json_body(response, 200, "application/json").await;
    let narrowed = body["access_token"].as_str().unwrap();
    assert_eq!(app.get_authed("/audit/", narrowed).await.status(), 403);

    // Purging everything before a time after now.
    let services = app.services.clone();
    let purged = tokio::task::spawn_blocking(move || services.audit.purge_before(i64::MAX))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(purged, 7, "3 users created, 4 logins");
}
both_backends!(the_trail_is_for_admins_and_checks_its_query);

/// A right password that gets no token is a failed login too, saying why.
async fn a_right_password_refused_its_scope_is_a_failed_login(db: TestDb) {
    let app = spawn_app_with(db, |_| {}).await;
    app.create_user(ADA, PASSWORD).await;
    app.create_user_with_role(ADMIN, PASSWORD, Role::Admin)
        .await;
    let refused = app
        .post_token(&[
            ("username", ADA),
            ("password", PASSWORD),
            ("scope", "movies:write"),
        ])
        .await;
    assert_eq!(refused.status(), 400);
    let (_, _, body) = login(&app, ADMIN, PASSWORD).await;
    let admin = body["access_token"].as_str().unwrap();
    let events = all_events(&app, admin, "event=login_failed").await;
    let failed = one_of_kind(&events, "login_failed");
    assert_eq!(failed["subject"], ADA, "{failed}");
    assert_eq!(
        failed["detail"], "right password, refused scope",
        "{failed}"
    );
}
both_backends!(a_right_password_refused_its_scope_is_a_failed_login);

//! The OpenAPI document: valid 3.1, exactly the mounted routes, the right security, and
//! unchanged from the committed snapshot unless the change is reviewed.
//!
//! Routes and their documentation come from one declaration, so "documented" and
//! "mounted" cannot differ by a forgotten list entry; the routing test below guards what
//! still could: a route mounted outside `routes::configure`, or a wrong `Allow`.

use std::collections::BTreeSet;
use std::process::Command;

use myapi_services::auth::{Role, SCOPES};

use crate::support::{Backend, TestDb, in_ci};
use crate::{json_body, spawn_app};

const SNAPSHOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/snapshots/openapi.json"
);
const PUBLIC: &[&str] = &[
    "/health",
    "/ready",
    "/token",
    "/revoke",
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
    "/password-reset",
    "/password-reset/confirm",
];

/// Operations without a token on paths whose other operations need one.
const PUBLIC_OPERATIONS: &[(&str, &str)] = &[("POST", "/users/"), ("POST", "/users/verify")];

fn is_public(method: &str, path: &str) -> bool {
    PUBLIC.contains(&path) || PUBLIC_OPERATIONS.contains(&(method, path))
}

async fn served_document() -> serde_json::Value {
    spawn_app(TestDb::new(Backend::Sqlite).unwrap())
        .await
        .openapi_document()
        .await
}

fn documented_operations(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn_app(TestDb::new(Backend::Sqlite).unwrap()).await;
    let doc = app.openapi_document().await;
    for (method, path) in documented_operations(&doc) {
        let concrete = path.replace("{movie_id}", "1");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .client
            .request(method.clone(), app.url(&concrete))
            .send()
            .await
            .unwrap();
        assert!(
            ![404, 405].contains(&response.status().as_u16()),
            "{method} {path} is not routed: {}",
            response.status()
        );
    }
    // Every other method gets 405 naming exactly the documented ones.
    let operations = documented_operations(&doc);
    let paths: BTreeSet<&String> = operations.iter().map(|(_, path)| path).collect();
    for path in paths {
        let documented: BTreeSet<&str> = operations
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(method, _)| method.as_str())
            .collect();
        let other = ["DELETE", "PATCH", "PUT", "POST", "GET"]
            .into_iter()
            .find(|m| !documented.contains(m))
            .unwrap();
        let concrete = path.replace("{movie_id}", "1");
        let response = app
            .client
            .request(
                reqwest::Method::from_bytes(other.as_bytes()).unwrap(),
                app.url(&concrete),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{other} {path}");
        let allow: BTreeSet<&str> = response.headers()["allow"]
            .to_str()
            .unwrap()
            .split(", ")
            .collect();
        assert_eq!(allow, documented, "Allow of {path}");
    }
}

#[tokio::test]
async fn security_scheme_is_oauth2_password_on_protected_routes_only() {
    let doc = served_document().await;
    let scheme = &doc["components"]["securitySchemes"]["oauth2"];
    assert_eq!(scheme["type"], "oauth2");
    assert_eq!(scheme["flows"]["password"]["tokenUrl"], "/token");
    for (method, path) in documented_operations(&doc) {
        let operation = &doc["paths"][&path][method.to_lowercase()];
        if is_public(&method, &path) {
            assert!(
                operation.get("security").is_none(),
                "{method} {path} must be public"
            );
        } else if path == "/users/me" || path == "/users/me/password" {
            assert_eq!(
                operation["security"],
                serde_json::json!([{"oauth2": []}]),
                "{method} {path}: any valid token"
            );
        } else {
            let scope = required_scope(&doc, &method, &path);
            assert!(
                SCOPES.contains(&scope.as_str()),
                "{method} {path} requires an unknown scope {scope}"
            );
            assert!(
                scheme["flows"]["password"]["scopes"][&scope].is_string(),
                "{scope} is offered by the password flow"
            );
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("401") && responses.contains_key("503"),
                "{method} {path}"
            );
        }
    }
    let token = &doc["paths"]["/token"]["post"];
    assert!(token["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object());
    assert_eq!(doc["info"]["title"], "myapi");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}

fn required_scope(doc: &serde_json::Value, method: &str, path: &str) -> String {
    let security = &doc["paths"][path][method.to_lowercase()]["security"];
    let scopes = security[0]["oauth2"].as_array().unwrap();
    assert_eq!(scopes.len(), 1, "{method} {path}: one scope per route");
    scopes[0].as_str().unwrap().to_owned()
}

/// Each route enforces the scope its document declares: a token with every other scope
/// but that one gets 403 `insufficient_scope` naming it.
#[tokio::test]
async fn every_route_enforces_its_declared_scope() {
    let app = spawn_app(TestDb::new(Backend::Sqlite).unwrap()).await;
    app.create_user_with_role("root@example.com", "correct-horse-battery", Role::Admin)
        .await;
    let doc = served_document().await;
    for (method, path) in documented_operations(&doc) {
        if is_public(&method, &path) || path.starts_with("/users/me") {
            continue;
        }
        let scope = required_scope(&doc, &method, &path);
        let others: Vec<&str> = SCOPES.iter().copied().filter(|s| *s != scope).collect();
        let response = app
            .post_token(&[
                ("username", "root@example.com"),
                ("password", "correct-horse-battery"),
                ("scope", &others.join(" ")),
            ])
            .await;
        let token = json_body(response, 200, "application/json").await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let response = app
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&path.replace("{movie_id}", "1")),
            )
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{method} {path} without {scope}");
        assert_eq!(
            response.headers()["www-authenticate"].to_str().unwrap(),
            format!(r#"Bearer error="insufficient_scope", scope="{scope}""#)
        );
    }
}

#[tokio::test]
async fn document_is_valid_openapi_3_1() {
    let doc = served_document().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let validator = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output();
    match validator {
        Ok(out) if out.status.success() => {}
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named") && !in_ci() => {
            eprintln!("SKIPPED OpenAPI validation: `pip install openapi-spec-validator` to run it");
        }
        Ok(out) => panic!(
            "openapi-spec-validator rejected the document:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(error) => assert!(!in_ci(), "python3 not available: {error}"),
    }
}

#[tokio::test]
async fn document_matches_the_committed_snapshot() {
    let doc = served_document().await;
    let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &pretty).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert!(
        committed == pretty,
        "the OpenAPI document changed; review it and run `UPDATE_SNAPSHOTS=1 cargo test -p myapi-web --test http openapi` \
         to update tests/snapshots/openapi.json"
    );
}

//! Signing-key rotation across two instances on one database, rolled out one instance at a
//! time as the README describes: 1. add the new key second, everywhere; 2. move it first;
//! 3. drop the old key.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use myapi_services::auth::{TokenKey, TokenKeys};

use crate::support::{TEST_TOKEN_KEY, TestDb};
use crate::{TestApp, both_backends, json_body, spawn_app};

const NEW_KEY: &str = "new-token-key-fedcba9876543210-fedcba9876";
const NEW_KID: &str = "2025-06";
const EMAIL: &str = "rotate@example.com";
const PASSWORD: &str = "correct-horse-battery";

async fn login(app: &TestApp, address: &str) -> String {
    let response = app
        .client
        .post(format!("{address}/token"))
        .form(&[("username", EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let body = json_body(response, 200, "application/json").await;
    body["access_token"].as_str().unwrap().to_owned()
}

async fn users_me(app: &TestApp, address: &str, token: &str) -> reqwest::Response {
    app.client
        .get(format!("{address}/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Every token answers 200 on every instance.
async fn assert_accepted(
    app: &TestApp,
    instances: &[(String, TokenKeys)],
    tokens: impl Iterator<Item = &String>,
    state: &str,
) {
    for token in tokens {
        for (address, _) in instances {
            let status = users_me(app, address, token).await.status();
            assert_eq!(
                status,
                200,
                "{state}: token with kid {:?} on {address}",
                kid(token)
            );
        }
    }
}

fn kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).unwrap().kid
}

/// `token` as the server signed it before tokens named their key: the same claims, no `kid`.
fn without_kid(token: &str) -> String {
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
        .unwrap()
        .claims;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(TEST_TOKEN_KEY.as_bytes()),
    )
    .unwrap()
}

async fn rotation_across_instances_rejects_no_valid_token(db: TestDb) {
    // Both instances start on MYAPI_TOKEN_KEY, as before key rotation existed.
    let app = spawn_app(db).await;
    app.create_user(EMAIL, PASSWORD).await;
    let old_key = TokenKey::try_from(TEST_TOKEN_KEY.to_owned()).unwrap();
    let old_kid = old_key.derived_kid();
    let single = TokenKeys::from(old_key);
    let mut instances = [
        (app.address.clone(), single.clone()),
        (
            app.start_instance(|s| s.token_key = Some(single.clone()))
                .await,
            single,
        ),
    ];
    let first = login(&app, &instances[0].0).await;
    let mut previous = vec![first.clone(), login(&app, &instances[1].0).await];
    let legacy = without_kid(&first);
    let mut signed_by_old_key = vec![legacy.clone()];
    signed_by_old_key.extend(previous.iter().cloned());

    let tokens = previous.iter().chain([&legacy]);
    assert_accepted(&app, &instances, tokens, "before step 1").await;

    let steps = [
        format!("{old_kid}:{TEST_TOKEN_KEY},{NEW_KID}:{NEW_KEY}"),
        format!("{NEW_KID}:{NEW_KEY},{old_kid}:{TEST_TOKEN_KEY}"),
        format!("{NEW_KID}:{NEW_KEY}"),
    ];
    for (step, keys) in steps.iter().enumerate() {
        let keys: TokenKeys = keys.parse().unwrap();
        for restarted in 0..instances.len() {
            instances[restarted] = (
                app.start_instance(|s| s.token_key = Some(keys.clone()))
                    .await,
                keys.clone(),
            );
            let mut issued = Vec::new();
            for (address, keys) in &instances {
                let token = login(&app, address).await;
                assert_eq!(kid(&token).as_deref(), Some(keys.signing().0));
                if kid(&token).as_deref() == Some(old_kid.as_str()) {
                    signed_by_old_key.push(token.clone());
                }
                issued.push(token);
            }
            // Until step 3, tokens from before the change stay valid too; step 3 comes
            // after the access-token lifetime, when they have expired in real life.
            let legacy_still_valid = (step < 2).then_some(&legacy);
            let tokens = previous.iter().chain(&issued).chain(legacy_still_valid);
            let state = format!("step {} with instance {restarted} restarted", step + 1);
            assert_accepted(&app, &instances, tokens, &state).await;
            previous = issued;
        }
    }

    // The legacy token, both instances' before step 1 and during step 1, and the one
    // instance still on step 1 while the other moved the new key first.
    assert_eq!(signed_by_old_key.len(), 1 + 2 + 2 + 2 + 1);
    for token in &signed_by_old_key {
        for (address, _) in &instances {
            let response = users_me(&app, address, token).await;
            assert_eq!(
                response.headers()["www-authenticate"],
                r#"Bearer error="invalid_token""#,
                "kid {:?} on {address}",
                kid(token)
            );
            json_body(response, 401, "application/problem+json").await;
        }
    }
}
both_backends!(rotation_across_instances_rejects_no_valid_token);

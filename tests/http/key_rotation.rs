//! Signing-key rotation across two instances on one database, rolled out one instance at a
//! time as the README describes: 1. add the new key second, everywhere; 2. move it first;
//! 3. drop the old key. The same for the move from a secret to Ed25519 key files, with a
//! verifier that knows only the published JWK Set; and the checks that bind a token to
//! its key's algorithm and to the access-token type.

use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use myapi_services::auth::keys::{JWKS_MAX_AGE_SECS, generate_ed25519};
use myapi_services::auth::{JwsKey, TokenKey, TokenKeys};

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

/// Restarts instance `restarted` with `keys`, then logs in on each instance: the tokens,
/// each checked to name its instance's signing key.
async fn restart_with(
    app: &TestApp,
    instances: &mut [(String, TokenKeys)],
    restarted: usize,
    keys: &TokenKeys,
) -> Vec<String> {
    let address = app
        .start_instance(|s| s.token_key = Some(keys.clone()))
        .await;
    instances[restarted] = (address, keys.clone());
    let mut issued = Vec::new();
    for (address, keys) in instances.iter() {
        let token = login(app, address).await;
        assert_eq!(kid(&token).as_deref(), Some(keys.signing().0));
        issued.push(token);
    }
    issued
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
            let issued = restart_with(&app, &mut instances, restarted, &keys).await;
            signed_by_old_key.extend(
                issued
                    .iter()
                    .filter(|token| kid(token).as_deref() == Some(old_kid.as_str()))
                    .cloned(),
            );
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

/// A public key as a verifier holds it: the JWK Set it fetched, keyed by kid.
fn cached_verifier(jwks: &serde_json::Value) -> jsonwebtoken::jwk::JwkSet {
    serde_json::from_value(jwks.clone()).unwrap()
}

/// Verifies `token` as another service would, with nothing but a fetched JWK Set.
fn verify_with(jwks: &jsonwebtoken::jwk::JwkSet, token: &str) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks
        .find(&kid)
        .ok_or(format!("kid {kid} is not in the cached set"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    let auth = myapi_services::Settings::defaults().unwrap().auth;
    validation.set_audience(&[auth.token_audience]);
    validation.set_issuer(&[auth.issuer]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn published_keys(app: &TestApp, address: &str) -> serde_json::Value {
    let response = app
        .client
        .get(format!("{address}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["cache-control"],
        format!("public, max-age={JWKS_MAX_AGE_SECS}")
    );
    json_body(response, 200, "application/json").await
}

/// The move from an HS256 secret to Ed25519 key files, then a rotation of the key files, on
/// two instances restarted one at a time, as the README's steps say: every token either
/// instance issued stays valid on both, and a verifier that cached the JWK Set once the new
/// key was published everywhere verifies every token signed with it.
async fn moving_to_key_files_and_rotating_them_refuses_no_valid_token(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_user(EMAIL, PASSWORD).await;
    let secret = TokenKey::try_from(TEST_TOKEN_KEY.to_owned()).unwrap();
    let secret = (secret.derived_kid(), JwsKey::from(secret));
    let (first, second) = (generate_ed25519(), generate_ed25519());
    let private = |key: &SigningKey| JwsKey::Ed25519(Box::new(key.clone()));
    let public = JwsKey::Ed25519Public(first.verifying_key());
    let fleet = |keys: Vec<(&str, JwsKey)>| {
        let keys = keys.into_iter().map(|(kid, key)| (kid.to_owned(), key));
        TokenKeys::new(keys.collect()).unwrap()
    };
    let secret_kid = secret.0.as_str();
    // (keys, kids that sign tokens still valid once the step is done everywhere)
    let steps = [
        // The move: publish the key file's public half beside the secret, then sign with
        // the private key, then (after the token lifetime) drop the secret.
        fleet(vec![(secret_kid, secret.1.clone()), ("a", public)]),
        fleet(vec![("a", private(&first)), (secret_kid, secret.1.clone())]),
        fleet(vec![("a", private(&first))]),
        // A rotation: the new key verifies, then signs, then the old one goes.
        fleet(vec![("a", private(&first)), ("b", private(&second))]),
        fleet(vec![("b", private(&second)), ("a", private(&first))]),
        fleet(vec![("b", private(&second))]),
    ];
    let start = TokenKeys::from(TokenKey::try_from(TEST_TOKEN_KEY.to_owned()).unwrap());
    let mut instances = [
        (app.address.clone(), start.clone()),
        (
            app.start_instance(|s| s.token_key = Some(start.clone()))
                .await,
            start,
        ),
    ];
    let mut previous = vec![
        login(&app, &instances[0].0).await,
        login(&app, &instances[1].0).await,
    ];
    let mut all_issued = previous.clone();
    let mut cached = None;
    for (step, keys) in steps.iter().enumerate() {
        for restarted in 0..instances.len() {
            let issued = restart_with(&app, &mut instances, restarted, keys).await;
            for token in &issued {
                let header = jsonwebtoken::decode_header(token).unwrap();
                assert_eq!(header.typ.as_deref(), Some("at+jwt"));
                if let Some(cached) = &cached
                    && header.alg == Algorithm::EdDSA
                {
                    verify_with(cached, token).unwrap();
                }
            }
            // Steps 3 and 6 come after the access-token lifetime: the tokens signed with
            // the dropped key have expired by then in real life.
            let expired_by_now = matches!(step, 2 | 5);
            let earlier = previous.iter().filter(|_| !expired_by_now);
            let state = format!("step {} with instance {restarted} restarted", step + 1);
            assert_accepted(&app, &instances, earlier.chain(&issued), &state).await;
            all_issued.extend(issued.iter().cloned());
            previous = issued;
        }
        // The step is done everywhere; a verifier's cache from now on has the new key
        // (older caches expire during the wait of max-age that the README asks for).
        let jwks = published_keys(&app, &instances[0].0).await;
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| {
                assert_eq!(
                    (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
                    (
                        &"OKP".into(),
                        &"Ed25519".into(),
                        &"EdDSA".into(),
                        &"sig".into()
                    )
                );
                assert!(key.get("d").is_none() && key.get("k").is_none(), "{key}");
                key["kid"].as_str().unwrap()
            })
            .collect();
        let expected: &[&str] = match step {
            0..=2 => &["a"],
            3 => &["a", "b"],
            4 => &["b", "a"],
            _ => &["b"],
        };
        assert_eq!(kids, expected, "step {}", step + 1);
        cached = Some(cached_verifier(&jwks));
    }
    // Once every step is done, only the second key's tokens are valid.
    let mut refused = 0;
    for token in &all_issued {
        let kid = kid(token);
        for (address, _) in &instances {
            let status = users_me(&app, address, token).await.status();
            let expected = if kid.as_deref() == Some("b") {
                200
            } else {
                401
            };
            assert_eq!(status, expected, "kid {kid:?} on {address}");
            refused += usize::from(status == 401);
        }
    }
    assert!(refused > 0);
}
both_backends!(moving_to_key_files_and_rotating_them_refuses_no_valid_token);

/// An attacker who knows the published key cannot use it as an HMAC secret, nor pass
/// another kind of JWT signed with the real key for an access token.
async fn a_token_must_match_its_keys_algorithm_and_type(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_user(EMAIL, PASSWORD).await;
    let signing = generate_ed25519();
    let keys = TokenKeys::new(vec![(
        "ed".to_owned(),
        JwsKey::Ed25519(Box::new(signing.clone())),
    )])
    .unwrap();
    let address = app.start_instance(|s| s.token_key = Some(keys)).await;
    let token = login(&app, &address).await;
    assert_eq!(users_me(&app, &address, &token).await.status(), 200);
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&token)
        .unwrap()
        .claims;
    let public = signing.verifying_key();
    let confused = jsonwebtoken::encode(
        &Header {
            kid: Some("ed".into()),
            typ: Some("at+jwt".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims,
        &EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    let ed = JwsKey::Ed25519(Box::new(signing.clone()))
        .encoding_key()
        .unwrap();
    let sign_typed = |typ: Option<&str>| {
        let header = Header {
            kid: Some("ed".into()),
            typ: typ.map(str::to_owned),
            ..Header::new(Algorithm::EdDSA)
        };
        jsonwebtoken::encode(&header, &claims, &ed).unwrap()
    };
    let mut not_yet = claims.clone();
    not_yet["nbf"] = (claims["iat"].as_u64().unwrap() + 3600).into();
    let mut issued_later = claims.clone();
    issued_later["iat"] = (claims["iat"].as_u64().unwrap() + 3600).into();
    let header = Header {
        kid: Some("ed".into()),
        typ: Some("at+jwt".into()),
        ..Header::new(Algorithm::EdDSA)
    };
    let [not_yet, issued_later] =
        [not_yet, issued_later].map(|claims| jsonwebtoken::encode(&header, &claims, &ed).unwrap());
    assert_eq!(
        users_me(&app, &address, &sign_typed(Some("application/AT+JWT")))
            .await
            .status(),
        200
    );
    for (forged, reason) in [
        (confused, "algorithm not allowed"),
        (sign_typed(Some("JWT")), "not an access token"),
        (sign_typed(None), "not an access token"),
        (not_yet, "token not yet valid"),
        (issued_later, "issued in the future"),
    ] {
        let response = users_me(&app, &address, &forged).await;
        let problem = json_body(response, 401, "application/problem+json").await;
        assert_eq!(problem["detail"], format!("invalid token: {reason}"));
    }
}
both_backends!(a_token_must_match_its_keys_algorithm_and_type);

/// With no key configured, the random per-process key is an Ed25519 key, published like any.
async fn a_process_without_keys_publishes_its_random_key(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_user(EMAIL, PASSWORD).await;
    let address = app.start_instance(|s| s.token_key = None).await;
    let token = login(&app, &address).await;
    assert_eq!(users_me(&app, &address, &token).await.status(), 200);
    let jwks = published_keys(&app, &address).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"].as_str(), kid(&token).as_deref());
    verify_with(&cached_verifier(&jwks), &token).unwrap();
    // Another process's random key is another key: its tokens mean nothing here.
    assert_eq!(users_me(&app, &app.address, &token).await.status(), 401);
}
both_backends!(a_process_without_keys_publishes_its_random_key);

//! Signing-key rotation across two instances on one database, rolled out one instance at a
//! time as the README describes: 1. add the new key second, everywhere; 2. move it first;
//! 3. drop the old key. The same for the move from a secret to Ed25519 key files, with a
//! verifier that knows only the published JWK Set, and with `examples/resource-server`
//! running throughout; and the checks that bind a token to its key's algorithm and to the
//! access-token type.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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

fn private(key: &SigningKey) -> JwsKey {
    JwsKey::Ed25519(Box::new(key.clone()))
}

/// The keys every instance of a step is started with.
fn fleet(keys: Vec<(&str, JwsKey)>) -> TokenKeys {
    let keys = keys.into_iter().map(|(kid, key)| (kid.to_owned(), key));
    TokenKeys::new(keys.collect()).unwrap()
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
    let public = JwsKey::Ed25519Public(first.verifying_key());
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

/// What a JWK Set URL in front of the fleet does: each fetch goes to the next instance of
/// those now running, and is counted.
struct JwksFront {
    instances: Mutex<Vec<String>>,
    turn: AtomicUsize,
    fetches: AtomicUsize,
    client: reqwest::Client,
}

impl JwksFront {
    fn point_at(&self, instances: &[(String, TokenKeys)]) {
        *self.instances.lock().unwrap() = instances.iter().map(|(a, _)| a.clone()).collect();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn forward_jwks(front: web::Data<JwksFront>) -> HttpResponse {
    front.fetches.fetch_add(1, Ordering::SeqCst);
    let address = {
        let instances = front.instances.lock().unwrap();
        instances[front.turn.fetch_add(1, Ordering::SeqCst) % instances.len()].clone()
    };
    let response = front
        .client
        .get(format!("{address}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    let cache_control = response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_owned();
    HttpResponse::Ok()
        .insert_header(("cache-control", cache_control))
        .content_type("application/json")
        .body(response.bytes().await.unwrap())
}

/// Starts a [`JwksFront`] for `instances`; it and its JWK Set URL.
fn start_jwks_front(instances: &[(String, TokenKeys)]) -> (Arc<JwksFront>, String) {
    let front = web::Data::new(JwksFront {
        instances: Mutex::default(),
        turn: AtomicUsize::new(0),
        fetches: AtomicUsize::new(0),
        client: reqwest::Client::new(),
    });
    front.point_at(instances);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let state = front.clone();
    let server = HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .route("/jwks.json", web::get().to(forward_jwks))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (front.into_inner(), url)
}

/// `GET /whoami` on the resource server with `token`.
async fn whoami(app: &TestApp, whoami: &str, token: &str) -> reqwest::Response {
    app.client
        .get(whoami)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Each token passes the resource server, which answers with its claims.
async fn assert_resource_server_accepts(
    app: &TestApp,
    url: &str,
    tokens: impl Iterator<Item = &String>,
    state: &str,
) {
    for token in tokens {
        let response = whoami(app, url, token).await;
        assert_eq!(response.status(), 200, "{state}: kid {:?}", kid(token));
        let body: serde_json::Value = response.json().await.unwrap();
        let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
            .unwrap()
            .claims;
        for claim in ["sub", "scope", "client_id"] {
            assert_eq!(body[claim], claims[claim], "{state}: {claim}");
        }
    }
}

/// The resource server's answer to `token`: 401, as RFC 6750 says for a bad token.
async fn assert_resource_server_refuses(app: &TestApp, url: &str, token: &str, what: &str) {
    let response = whoami(app, url, token).await;
    assert_eq!(response.status(), 401, "{what}");
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#,
        "{what}"
    );
    let body = json_body(response, 401, "application/json").await;
    assert_eq!(body["error"], "invalid_token", "{what}");
}

fn typed_header(alg: Algorithm, kid: &str, typ: &str) -> Header {
    Header {
        kid: Some(kid.to_owned()),
        typ: Some(typ.to_owned()),
        ..Header::new(alg)
    }
}

/// Forgeries of `token`, whose kid `kid` names `signing`: each must be refused, and none
/// names a kid the resource server has not cached (none makes it fetch the set).
fn forgeries(token: &str, kid: &str, signing: &SigningKey) -> [(&'static str, String); 3] {
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
        .unwrap()
        .claims;
    let mut other_user = claims.clone();
    other_user["sub"] = "0".into();
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(other_user.to_string()),
        parts[2]
    );
    let hmac_with_public_key = jsonwebtoken::encode(
        &typed_header(Algorithm::HS256, kid, "at+jwt"),
        &claims,
        &EncodingKey::from_secret(signing.verifying_key().as_bytes()),
    )
    .unwrap();
    let key = private(signing).encoding_key().unwrap();
    let not_an_access_token =
        jsonwebtoken::encode(&typed_header(Algorithm::EdDSA, kid, "JWT"), &claims, &key).unwrap();
    [
        ("tampered claims", tampered),
        ("HS256 with the public key as secret", hmac_with_public_key),
        ("typ JWT", not_an_access_token),
    ]
}

/// `token`'s claims signed with a key nobody published: the resource server fetches the
/// set again for its kid (every unknown kid does, in this test), then refuses it.
async fn assert_unknown_kid_refused(app: &TestApp, front: &JwksFront, url: &str, token: &str) {
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
        .unwrap()
        .claims;
    let key = private(&generate_ed25519()).encoding_key().unwrap();
    let header = typed_header(Algorithm::EdDSA, "unpublished", "at+jwt");
    let forged = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let fetches = front.fetches();
    assert_resource_server_refuses(app, url, &forged, "an unknown kid").await;
    assert_eq!(front.fetches(), fetches + 1);
}

/// A resource server that knows nothing but the fleet's JWK Set URL, started before the
/// rotation so that its cached set is stale when the new key first signs: it fetches the
/// set again for that kid, and accepts every token either instance issued and that is
/// still valid, at every step of the README's rotation of key files.
async fn a_resource_server_with_only_the_jwks_url_follows_a_key_rotation(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_user(EMAIL, PASSWORD).await;
    let (first, second) = (generate_ed25519(), generate_ed25519());
    let key_of = |kid: &str| {
        if kid == "a" {
            first.clone()
        } else {
            second.clone()
        }
    };
    let start = fleet(vec![("a", private(&first))]);
    let steps = [
        fleet(vec![
            ("a", private(&first)),
            ("b", JwsKey::Ed25519Public(second.verifying_key())),
        ]),
        fleet(vec![("b", private(&second)), ("a", private(&first))]),
        fleet(vec![("b", private(&second))]),
    ];
    let mut instances = [
        (
            app.start_instance(|s| s.token_key = Some(start.clone()))
                .await,
            start.clone(),
        ),
        (
            app.start_instance(|s| s.token_key = Some(start.clone()))
                .await,
            start,
        ),
    ];
    let (front, jwks_url) = start_jwks_front(&instances);
    let auth = &app.settings.auth;
    let mut config =
        resource_server::Config::new(jwks_url, auth.token_audience.clone(), auth.issuer.clone());
    // Every unknown kid fetches, so that the count of fetches below says exactly which
    // tokens made one (the bound on fetches has its own test in the example).
    config.min_refetch_interval = std::time::Duration::ZERO;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/whoami", listener.local_addr().unwrap());
    tokio::spawn(resource_server::run(listener, config).await.unwrap());
    assert_eq!(front.fetches(), 1);

    let mut previous = vec![
        login(&app, &instances[0].0).await,
        login(&app, &instances[1].0).await,
    ];
    assert_resource_server_accepts(&app, &url, previous.iter(), "before step 1").await;
    assert_unknown_kid_refused(&app, &front, &url, &previous[0]).await;
    let mut all_issued = previous.clone();
    for (step, keys) in steps.iter().enumerate() {
        for restarted in 0..instances.len() {
            let issued = restart_with(&app, &mut instances, restarted, keys).await;
            front.point_at(&instances);
            let state = format!("step {} with instance {restarted} restarted", step + 1);
            // Step 3 comes after the access-token lifetime: the tokens signed with the
            // dropped key have expired by then in real life.
            let earlier = previous.iter().filter(|_| step != 2);
            let fetches = front.fetches();
            assert_resource_server_accepts(&app, &url, earlier.chain(&issued), &state).await;
            // Only the first token signed with the new key finds the cached set stale.
            let first_of_b = step == 1 && restarted == 0;
            assert_eq!(
                front.fetches(),
                fetches + usize::from(first_of_b),
                "{state}"
            );

            let signing_kid = keys.signing().0;
            for (what, forged) in forgeries(&issued[0], signing_kid, &key_of(signing_kid)) {
                let what = format!("{state}: {what}");
                assert_resource_server_refuses(&app, &url, &forged, &what).await;
            }
            // Not during step 1: the fetch would bring the resource server the new key
            // before it signs, and leave no stale set to test.
            if step > 0 {
                assert_unknown_kid_refused(&app, &front, &url, &issued[0]).await;
            }
            all_issued.extend(issued.iter().cloned());
            previous = issued;
        }
    }
    // The unknown kid of the last forgeries made the resource server fetch the set of the
    // finished rotation, without the dropped key: it refuses that key's tokens now, as the
    // instances do.
    let mut refused = 0;
    for token in &all_issued {
        if kid(token).as_deref() == Some("a") {
            assert_resource_server_refuses(&app, &url, token, "signed with the dropped key").await;
            refused += 1;
        } else {
            assert_eq!(whoami(&app, &url, token).await.status(), 200);
        }
    }
    assert!(refused > 0);
}
both_backends!(a_resource_server_with_only_the_jwks_url_follows_a_key_rotation);

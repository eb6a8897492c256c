//! The resource server against a stand-in issuer that serves a JWK Set and counts its
//! fetches: what a token must be to pass, and how often the set is fetched again.
//! (`tests/http/key_rotation.rs` runs it against real myapi instances through a rotation.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use resource_server::Config;
use serde_json::{Value, json};

const AUDIENCE: &str = "myapi";
const ISSUER: &str = "http://issuer.example";

/// The stand-in issuer's state: the keys it publishes, its `Cache-Control`, its fetches.
#[derive(Default)]
struct Published {
    keys: Mutex<Vec<Value>>,
    cache_control: Mutex<String>,
    fetches: AtomicUsize,
}

impl Published {
    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn jwks(published: web::Data<Published>) -> HttpResponse {
    published.fetches.fetch_add(1, Ordering::SeqCst);
    let keys = published.keys.lock().unwrap().clone();
    let cache_control = published.cache_control.lock().unwrap().clone();
    HttpResponse::Ok()
        .insert_header(("cache-control", cache_control))
        .json(json!({ "keys": keys }))
}

/// Starts an issuer publishing `keys`, and a resource server on it; the server's `/whoami`.
async fn start(
    keys: Vec<Value>,
    cache_control: &str,
    tweak: impl FnOnce(&mut Config),
) -> (Arc<Published>, String) {
    let published = web::Data::new(Published {
        keys: Mutex::new(keys),
        cache_control: Mutex::new(cache_control.to_owned()),
        ..Published::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let state = published.clone();
    let issuer = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/jwks.json", web::get().to(jwks))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(issuer);

    let mut config = Config::new(jwks_url, AUDIENCE.into(), ISSUER.into());
    tweak(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let whoami = format!("http://{}/whoami", listener.local_addr().unwrap());
    tokio::spawn(resource_server::run(listener, config).await.unwrap());
    (published.into_inner(), whoami)
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn jwk(key: &SigningKey, kid: &str) -> Value {
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig" })
}

fn claims() -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "sub": "42", "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 600,
        "scope": "movies:read", "client_id": "cli",
    })
}

fn sign(key: &SigningKey, kid: &str, typ: Option<&str>, claims: &Value) -> String {
    let header = Header {
        kid: Some(kid.into()),
        typ: typ.map(Into::into),
        ..Header::new(Algorithm::EdDSA)
    };
    let der = key.to_pkcs8_der().unwrap();
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
}

fn access_token(key: &SigningKey, kid: &str) -> String {
    sign(key, kid, Some("at+jwt"), &claims())
}

/// The status, after checking a refusal's challenge and body.
async fn status(whoami: &str, token: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().get(whoami);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status == 401 {
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        let expected = if token.is_some() {
            r#"Bearer error="invalid_token""#
        } else {
            "Bearer"
        };
        assert_eq!(challenge, expected);
        let body: Value = response.json().await.unwrap();
        assert!(body["error_description"].is_string(), "{body}");
    }
    status
}

#[tokio::test]
async fn accepts_an_access_token_of_a_published_key_and_nothing_else() {
    let signing = key(1);
    let (_, whoami) = start(vec![jwk(&signing, "k1")], "max-age=300", |_| {}).await;

    let token = access_token(&signing, "k1");
    let response = reqwest::Client::new()
        .get(&whoami)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "sub": "42", "scope": "movies:read", "client_id": "cli" })
    );
    let typed = sign(&signing, "k1", Some("application/AT+JWT"), &claims());
    assert_eq!(status(&whoami, Some(&typed)).await, 200);

    let with = |change: fn(&mut Value)| {
        let mut claims = claims();
        change(&mut claims);
        sign(&signing, "k1", Some("at+jwt"), &claims)
    };
    let hmac_with_public_key = jsonwebtoken::encode(
        &Header {
            kid: Some("k1".into()),
            typ: Some("at+jwt".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims(),
        &EncodingKey::from_secret(signing.verifying_key().as_bytes()),
    )
    .unwrap();
    let tampered = {
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims = claims();
        claims["sub"] = "1".into();
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let refused = [
        ("HS256 with the public key as secret", hmac_with_public_key),
        ("tampered", tampered),
        ("typ JWT", sign(&signing, "k1", Some("JWT"), &claims())),
        ("no typ", sign(&signing, "k1", None, &claims())),
        ("unknown kid", access_token(&signing, "k2")),
        ("unpublished key", access_token(&key(2), "k1")),
        ("other audience", with(|c| c["aud"] = "other".into())),
        (
            "other issuer",
            with(|c| c["iss"] = "http://other.example".into()),
        ),
        (
            "expired",
            with(|c| c["exp"] = (c["iat"].as_u64().unwrap() - 3600).into()),
        ),
        (
            "not yet valid",
            with(|c| c["nbf"] = (c["iat"].as_u64().unwrap() + 3600).into()),
        ),
        (
            "no sub",
            with(|c| drop(c.as_object_mut().unwrap().remove("sub"))),
        ),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    for (what, token) in refused {
        assert_eq!(status(&whoami, Some(&token)).await, 401, "{what}");
    }
    assert_eq!(status(&whoami, None).await, 401);
}

/// Requests naming unknown kids make one fetch per interval at most, and requests that need
/// the same fetch wait for it rather than fail or fetch again.
#[tokio::test]
async fn unknown_kids_refetch_the_set_at_most_once_per_interval() {
    const INTERVAL: Duration = Duration::from_secs(3);
    let (old, new) = (key(1), key(2));
    let (published, whoami) = start(vec![jwk(&old, "old")], "max-age=300", |config| {
        config.min_refetch_interval = INTERVAL;
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(published.fetches(), 1);

    published.keys.lock().unwrap().push(jwk(&new, "new"));
    let random_kids = (0..20).map(|i| access_token(&new, &format!("random-{i}")));
    let rejected = send_all(&whoami, random_kids.chain([access_token(&new, "new")]));
    assert!(rejected.await.iter().all(|&status| status == 401));
    assert!(
        started.elapsed() < INTERVAL,
        "too slow a machine for this test"
    );
    assert_eq!(published.fetches(), 1, "a fetch within the interval");

    tokio::time::sleep(INTERVAL).await;
    let tokens = (0..10).map(|_| access_token(&new, "new"));
    assert!(
        send_all(&whoami, tokens)
            .await
            .iter()
            .all(|&status| status == 200)
    );
    assert_eq!(published.fetches(), 2);
    assert_eq!(status(&whoami, Some(&access_token(&old, "old"))).await, 200);
}

/// Sends each token in a request of its own, all at once; their statuses.
async fn send_all(whoami: &str, tokens: impl Iterator<Item = String>) -> Vec<u16> {
    let requests: Vec<_> = tokens
        .map(|token| {
            let whoami = whoami.to_owned();
            tokio::spawn(async move { status(&whoami, Some(&token)).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap());
    }
    statuses
}

/// A key the issuer dropped stops passing once the set's `max-age` has run out.
#[tokio::test]
async fn a_set_past_its_max_age_is_fetched_again() {
    let signing = key(1);
    let (published, whoami) = start(vec![jwk(&signing, "k1")], "public, max-age=1", |config| {
        config.min_refetch_interval = Duration::ZERO;
    })
    .await;
    let token = access_token(&signing, "k1");
    assert_eq!(status(&whoami, Some(&token)).await, 200);
    published.keys.lock().unwrap().clear();
    assert_eq!(status(&whoami, Some(&token)).await, 200, "cached");
    assert_eq!(published.fetches(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&whoami, Some(&token)).await, 401);
    assert_eq!(published.fetches(), 2);
}

//! Someone else's service that accepts myapi's access tokens knowing nothing but the URL of
//! the issuer's JWK Set: no shared secret, no myapi crate, no database of ours.
//!
//! `GET /whoami` with `Authorization: Bearer <token>` answers with the token's `sub`, `scope`
//! and `client_id`. A token passes if it is an RFC 9068 access token (`typ` `at+jwt`), signed
//! with EdDSA by the key of the set that its `kid` names, for the configured audience and
//! issuer, and within its `nbf` and `exp`. Anything else gets 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"`.
//!
//! The set is fetched at start-up and kept in memory. It is fetched again once its
//! `Cache-Control: max-age` has passed, and when a token names a kid that the cached set
//! lacks: that is how a key rotation reaches this service without a restart. Fetches are at
//! most one per [`Config::min_refetch_interval`], because the kid comes from the request:
//! without that bound, anyone could make this service call the issuer on every request.
//!
//! A signature says who issued a token, not whether it still should be honoured: a token
//! stays valid here until its `exp`, even after its user was logged out or deleted.
//!
//! **TLS.** This crate uses the workspace's reqwest, which has no TLS feature, so the JWK Set
//! URL must be `http://`, and [`run`] refuses any other. That is only right on loopback or a
//! network you trust: whoever can change the set in transit can sign tokens this service
//! accepts. In production, serve the set over `https://` and enable a TLS feature of reqwest
//! (`rustls-tls`, for instance) in this crate's `Cargo.toml`, then drop the check in [`run`].

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// What the service trusts, and how often it asks the issuer.
#[derive(Debug, Clone)]
pub struct Config {
    /// The issuer's JWK Set, e.g. `http://127.0.0.1:8000/.well-known/jwks.json`.
    pub jwks_url: String,
    /// The `aud` a token must carry (myapi's `auth.token_audience`): a token the same issuer
    /// made for another deployment is not for this one.
    pub audience: String,
    /// The `iss` a token must carry (myapi's `auth.issuer`): keys are trusted for one issuer.
    pub issuer: String,
    /// The least time between two fetches of the set: the bound on what requests naming
    /// unknown kids can make this service send the issuer. Its cost: a token of a new key
    /// that comes within this time of the last fetch is refused until it has passed. A
    /// rotation that publishes the key a `max-age` before it signs (as myapi's README says)
    /// never meets it; a hurried one may, for this long.
    pub min_refetch_interval: Duration,
    /// The longest a fetched set is used, shorter if its response's `max-age` says so: when
    /// the issuer drops a key, this service stops accepting it within this time.
    pub max_age: Duration,
    /// How long one fetch may take. Requests that need the fetch wait for it.
    pub fetch_timeout: Duration,
}

impl Config {
    /// A configuration with the default intervals: 10 s between fetches at least, a set
    /// used for 300 s at most (myapi's `max-age`), 5 s per fetch.
    pub fn new(jwks_url: String, audience: String, issuer: String) -> Self {
        Self {
            jwks_url,
            audience,
            issuer,
            min_refetch_interval: Duration::from_secs(10),
            max_age: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Fetches the JWK Set, then serves `GET /whoami` on `listener`; await or spawn the server.
///
/// The server does not handle signals: a program that embeds it (a test) keeps its own.
pub async fn run(listener: TcpListener, config: Config) -> io::Result<Server> {
    let jwks = web::Data::new(Jwks::start(config).await?);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(jwks.clone())
            .route("/whoami", web::get().to(whoami))
    })
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// The claims this service uses, and what `/whoami` answers.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

/// A 401 body: `error` is absent when no token was sent (RFC 6750 §3.1).
#[derive(Serialize)]
struct Refusal<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    error_description: &'a str,
}

async fn whoami(request: HttpRequest, jwks: web::Data<Jwks>) -> HttpResponse {
    let Some(token) = bearer_token(&request) else {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
            .json(Refusal {
                error: None,
                error_description: "no bearer token",
            });
    };
    match jwks.verify(token).await {
        Ok(claims) => HttpResponse::Ok().json(claims),
        Err(reason) => HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#))
            .json(Refusal {
                error: Some("invalid_token"),
                error_description: &reason,
            }),
    }
}

fn bearer_token(request: &HttpRequest) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The keys of one fetched set, by kid.
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    refresh_at: Instant,
}

/// The issuer's keys as last fetched, and what verifies a token with them.
struct Jwks {
    config: Config,
    client: reqwest::Client,
    validation: Validation,
    /// Swapped whole on each fetch, so a request verifies against one set, never a mix.
    current: RwLock<Arc<KeySet>>,
    /// When the set was last fetched, successfully or not. Held during a fetch: requests
    /// that need one wait for it instead of each sending their own.
    last_fetch: tokio::sync::Mutex<Instant>,
}

impl Jwks {
    async fn start(config: Config) -> io::Result<Self> {
        let url = reqwest::Url::parse(&config.jwks_url).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("JWK Set URL {}: {error}", config.jwks_url),
            )
        })?;
        // Said once at start, rather than as a failed fetch on every refresh: see the TLS
        // note in the crate documentation.
        if url.scheme() != "http" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "JWK Set URL {url}: this build fetches over http:// only (reqwest has \
                     no TLS feature here; enable one for https)"
                ),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .build()
            .map_err(io::Error::other)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[&config.audience]);
        validation.set_issuer(&[&config.issuer]);
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let jwks = Self {
            config,
            client,
            validation,
            // Stale from the start, so a failed first fetch is retried after the interval.
            current: RwLock::new(Arc::new(KeySet {
                keys: HashMap::new(),
                refresh_at: Instant::now(),
            })),
            last_fetch: tokio::sync::Mutex::new(Instant::now()),
        };
        // An unreachable issuer does not stop the start: services need not start in order.
        let fetched = jwks.fetch().await;
        jwks.install(fetched);
        Ok(jwks)
    }

    async fn verify(&self, token: &str) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| error.to_string())?;
        // Checked before any key is looked up: the algorithm is ours to choose, never the
        // token's (an Ed25519 public key used as an HMAC secret would let anyone sign).
        if header.alg != Algorithm::EdDSA {
            return Err("algorithm not allowed".to_owned());
        }
        // RFC 9068 §4: no other JWT signed with the same key (an ID token, say) may pass for
        // an access token. Media types compare case-insensitively; `application/` is optional.
        let typ = header.typ.unwrap_or_default().to_ascii_lowercase();
        if typ != "at+jwt" && typ != "application/at+jwt" {
            return Err("not an access token".to_owned());
        }
        let kid = header.kid.ok_or("no kid")?;
        let set = self.keys_for(&kid).await;
        let key = set.keys.get(&kid).ok_or("unknown kid")?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| error.to_string())
    }

    /// The set to look `kid` up in: the cached one if it is fresh and has `kid`, else a
    /// fresh fetch if the interval allows one.
    async fn keys_for(&self, kid: &str) -> Arc<KeySet> {
        let seen = self.current();
        let known = seen.keys.contains_key(kid);
        if known && seen.refresh_at > Instant::now() {
            return seen;
        }
        let mut last_fetch = if known {
            // Past its max-age but with the key: one request refreshes the set while the
            // others go on with it rather than wait.
            match self.last_fetch.try_lock() {
                Ok(last_fetch) => last_fetch,
                Err(_) => return seen,
            }
        } else {
            self.last_fetch.lock().await
        };
        let current = self.current();
        // Another request fetched while this one waited, or one fetched too recently.
        if !Arc::ptr_eq(&current, &seen) || last_fetch.elapsed() < self.config.min_refetch_interval
        {
            return current;
        }
        *last_fetch = Instant::now();
        let fetched = self.fetch().await;
        self.install(fetched)
    }

    fn current(&self) -> Arc<KeySet> {
        // Only an `Arc` is ever written under the lock: a panic cannot leave it half-set.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Makes a fetched set the current one; after a failed fetch, the keys fetched before
    /// stay in use: an issuer that is down for a while should not log everyone out here.
    fn install(&self, fetched: Result<KeySet, reqwest::Error>) -> Arc<KeySet> {
        match fetched {
            Ok(set) => {
                let set = Arc::new(set);
                let mut kids: Vec<&String> = set.keys.keys().collect();
                kids.sort();
                log::info!("JWK Set from {}: kids {kids:?}", self.config.jwks_url);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&set);
                set
            }
            Err(error) => {
                log::warn!(
                    "JWK Set from {}: {error}; the keys of the last good fetch stay in use",
                    self.config.jwks_url
                );
                self.current()
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, reqwest::Error> {
        let response = self
            .client
            .get(&self.config.jwks_url)
            .send()
            .await?
            .error_for_status()?;
        let max_age = max_age(response.headers()).map_or(self.config.max_age, |max_age| {
            max_age.min(self.config.max_age)
        });
        let set: JwkSet = response.json().await?;
        let keys = set.keys.iter().filter_map(ed25519_key).collect();
        Ok(KeySet {
            keys,
            refresh_at: Instant::now() + max_age,
        })
    }
}

/// A JWK as a key to verify EdDSA with, or `None` for any other kind: a key of another type
/// would verify another algorithm (an `oct` key is an HMAC secret anyone could read here).
fn ed25519_key(jwk: &Jwk) -> Option<(String, DecodingKey)> {
    let kid = jwk.common.key_id.clone()?;
    let AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm else {
        return None;
    };
    let usable = params.curve == EllipticCurve::Ed25519
        && matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::EdDSA))
        && matches!(
            jwk.common.public_key_use,
            None | Some(PublicKeyUse::Signature)
        );
    if !usable {
        return None;
    }
    Some((kid, DecodingKey::from_jwk(jwk).ok()?))
}

/// The `max-age` of a `Cache-Control` header.
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    value.split(',').find_map(|directive| {
        let (name, seconds) = directive.trim().split_once('=')?;
        let seconds = seconds.parse().ok()?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| Duration::from_secs(seconds))
    })
}

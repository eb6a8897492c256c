//! Access tokens (RFC 9068 JWTs, EdDSA or HS256): issue and verify, with `kid`, `typ`, `exp`,
//! `nbf`, `iat`, `iss`, `aud` and `sub` enforced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, TokenData, Validation};
use myapi_schemas::{JsonWebKey, JsonWebKeySet};
use serde::{Deserialize, Serialize};

use crate::ServiceError;
use crate::audit::unix_now;
use crate::auth::keys::{JwsKey, TokenKeys};
use crate::bounded::{BoundedMap, Retention};
use crate::config::AuthSettings;
use crate::secrets::random_id;

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

/// How many verified tokens [`TokenSigner::verify_memoised`] keeps. Each costs its text and
/// its claims: about 1 KiB, up to ~3.5 KiB with the longest names and emails, so at most
/// ~14 MiB, reached only with that many clients at once.
const MEMOISED_TOKENS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a string (RFC 7519 `sub`).
    pub sub: String,
    /// Display name at issue time.
    pub name: String,
    /// Email at issue time.
    pub email: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    pub iss: String,
    /// The deployment the token is for (`auth.token_audience`).
    pub aud: String,
    /// A random id per token (RFC 7519 §4.1.7).
    pub jti: String,
    /// The user's security stamp at issue time: a password change, or a new user who gets
    /// the same id after a database reset, has another one.
    pub stm: String,
    /// Granted scopes, space-separated (RFC 9068 §2.2.3). Absent from tokens issued before
    /// scopes existed: those mean everything the user's role allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The login's refresh-token family (a session id, OpenID Connect's `sid`). Absent from
    /// tokens issued before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The OAuth client the token was issued to (RFC 9068 §2.2). Absent from tokens issued
    /// before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The login an access token belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    /// Its refresh-token family.
    pub family_id: &'a str,
    pub client_id: &'a str,
}

impl Claims {
    pub fn user_id(&self) -> Result<i32, ServiceError> {
        self.sub
            .parse()
            .map_err(|_| ServiceError::InvalidToken("malformed subject"))
    }
}

/// The JWS `typ` of access tokens (RFC 9068 §2.1), which keeps an ID token or any other JWT
/// signed with the same key from passing for one.
const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The `iss` of every token issued before `auth.issuer` existed, when `auth.token_issuer`
/// was left at its default. Still accepted on HS256 tokens, the only kind issued then, so
/// that the upgrade logs nobody out; they expire within the token lifetime.
const LEGACY_ISSUER: &str = "myapi";

/// What one `kid` verifies: its key, under its own algorithm only.
#[derive(Clone)]
struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// EdDSA tokens have carried `typ: at+jwt` from the start; HS256 tokens issued before
    /// it may lack it until they expire.
    typ_required: bool,
}

/// Signs with the signing key, naming it in the JWS header's `kid`, and verifies with the
/// key the token's `kid` names.
#[derive(Clone)]
pub struct TokenSigner {
    header: Header,
    encoding: EncodingKey,
    verifiers: HashMap<String, Verifier>,
    /// The public halves of the Ed25519 keys, for `/.well-known/jwks.json`.
    published: Arc<JsonWebKeySet>,
    /// What a token without `kid` (issued before tokens named their key) is checked against:
    /// the keys configured under their derived kid, i.e. `MYAPI_TOKEN_KEY`, or that key moved
    /// into `MYAPI_TOKEN_KEYS`.
    kidless: Vec<DecodingKey>,
    kidless_validation: Validation,
    issuer: String,
    audience: String,
    lifetime: Duration,
    /// Tokens that verified, by their text. A client sends the same bearer token with every
    /// request, and decoding it (two JSON parses, base64 and an HMAC, ~4 µs) is the largest
    /// share of a cached read's own CPU. Never stale: what verification proved depends only
    /// on the token and on the keys, which are fixed for the process's life; `exp`, the one
    /// claim that time changes, is checked again on every use.
    verified: Arc<Mutex<BoundedMap<Box<str>, Arc<Claims>>>>,
}

impl TokenSigner {
    /// A signer using `keys`, or a random per-process Ed25519 key when `None` (tokens then do
    /// not survive a restart nor work across instances; the server warns about it).
    pub fn new(keys: Option<&TokenKeys>, settings: &AuthSettings) -> Self {
        let keys = keys.cloned().unwrap_or_else(TokenKeys::random);
        let (signing_kid, signing_key) = keys.signing();
        let validation = |algorithm| {
            let mut validation = Validation::new(algorithm);
            validation.leeway = LEEWAY_SECS;
            validation.validate_nbf = true;
            if algorithm == Algorithm::HS256 {
                validation.set_issuer(&[settings.issuer.as_str(), LEGACY_ISSUER]);
            } else {
                validation.set_issuer(&[&settings.issuer]);
            }
            validation.set_audience(&[&settings.token_audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation
        };
        let verifiers = keys
            .iter()
            .map(|(kid, key)| {
                let verifier = Verifier {
                    key: key.decoding_key(),
                    validation: validation(key.algorithm()),
                    typ_required: key.algorithm() == Algorithm::EdDSA,
                };
                (kid.to_owned(), verifier)
            })
            .collect();
        let kidless = keys
            .iter()
            .filter_map(|(kid, key)| match key {
                JwsKey::Hs256(secret) if kid == secret.derived_kid() => Some(key.decoding_key()),
                _ => None,
            })
            .collect();
        let published = keys
            .iter()
            .filter_map(|(kid, key)| {
                key.public_key().map(|public| JsonWebKey {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    kid: kid.to_owned(),
                    use_: "sig".into(),
                    alg: "EdDSA".into(),
                    x: URL_SAFE_NO_PAD.encode(public.as_bytes()),
                })
            })
            .collect();
        Self {
            published: Arc::new(JsonWebKeySet { keys: published }),
            header: Header {
                kid: Some(signing_kid.to_owned()),
                typ: Some(ACCESS_TOKEN_TYP.to_owned()),
                ..Header::new(signing_key.algorithm())
            },
            encoding: signing_key
                .encoding_key()
                .unwrap_or_else(|| unreachable!("TokenKeys signs with a private key")),
            verifiers,
            kidless,
            kidless_validation: validation(Algorithm::HS256),
            issuer: settings.issuer.clone(),
            audience: settings.token_audience.clone(),
            lifetime: Duration::from_secs(settings.token_lifetime_minutes.get().saturating_mul(60)),
            verified: Arc::new(Mutex::new(BoundedMap::new(MEMOISED_TOKENS))),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public keys tokens are verified with, the signing one first.
    pub fn published_keys(&self) -> &JsonWebKeySet {
        &self.published
    }

    /// Token lifetime in seconds (the `expires_in` of the token response).
    pub fn lifetime_secs(&self) -> u64 {
        self.lifetime.as_secs()
    }

    pub fn issue(
        &self,
        user_id: i32,
        name: &str,
        email: &str,
        security_stamp: &str,
        scope: &str,
        session: Session<'_>,
    ) -> Result<String, ServiceError> {
        let now = unix_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            name: name.to_owned(),
            email: email.to_owned(),
            iat: now,
            exp: now + self.lifetime.as_secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: random_id(),
            stm: security_stamp.to_owned(),
            scope: Some(scope.to_owned()),
            sid: Some(session.family_id.to_owned()),
            client_id: Some(session.client_id.to_owned()),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.encoding)
            .map_err(|e| ServiceError::internal("token signing failed", e))
    }

    /// Verifies `kid`, the algorithm of its key, `typ`, signature, `exp`, `nbf`, `iat`, `iss`,
    /// `aud` and `sub`; CPU only, never blocks.
    pub fn verify(&self, token: &str) -> Result<Claims, ServiceError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| rejection(&e))?;
        let data = match header.kid {
            Some(kid) => {
                let verifier = self
                    .verifiers
                    .get(&kid)
                    .ok_or(ServiceError::InvalidToken("unknown key id"))?;
                if verifier.typ_required && !is_access_token_typ(header.typ.as_deref()) {
                    return Err(ServiceError::InvalidToken("not an access token"));
                }
                jsonwebtoken::decode::<Claims>(token, &verifier.key, &verifier.validation)
                    .map_err(|e| rejection(&e))?
            }
            None => self.decode_without_kid(token)?,
        };
        if data.claims.iat > unix_secs().saturating_add(LEEWAY_SECS) {
            return Err(ServiceError::InvalidToken("issued in the future"));
        }
        data.claims.user_id()?;
        Ok(data.claims)
    }

    /// [`Self::verify`], answered from memory for a token that verified before and has not
    /// expired since. Failures are not kept: a forged token costs its sender a full check.
    pub fn verify_memoised(&self, token: &str) -> Result<Arc<Claims>, ServiceError> {
        let known = self.memo().get(token).cloned();
        if let Some(claims) = known {
            return if expired(&claims, unix_secs()) {
                Err(ServiceError::InvalidToken("token expired"))
            } else {
                Ok(claims)
            };
        }
        let claims = Arc::new(self.verify(token)?);
        let now = unix_secs();
        let retention = |claims: &Arc<Claims>| {
            if expired(claims, now) {
                Retention::Expired
            } else {
                Retention::Normal
            }
        };
        self.memo()
            .insert(token.into(), Arc::clone(&claims), Instant::now(), retention);
        Ok(claims)
    }

    fn memo(&self) -> MutexGuard<'_, BoundedMap<Box<str>, Arc<Claims>>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tokens issued before tokens had kids verify only while their key is configured under
    /// its derived kid, so they end when that key is dropped.
    fn decode_without_kid(&self, token: &str) -> Result<TokenData<Claims>, ServiceError> {
        if self.kidless.is_empty() {
            return Err(ServiceError::InvalidToken("no key id"));
        }
        let mut outcome = Err(ErrorKind::InvalidSignature.into());
        for key in &self.kidless {
            outcome = jsonwebtoken::decode::<Claims>(token, key, &self.kidless_validation);
            if !matches!(&outcome, Err(e) if *e.kind() == ErrorKind::InvalidSignature) {
                break;
            }
        }
        outcome.map_err(|e| rejection(&e))
    }
}

/// `at+jwt`, or its media type `application/at+jwt`, in any case (RFC 9068 §4).
fn is_access_token_typ(typ: Option<&str>) -> bool {
    typ.is_some_and(|typ| {
        let typ = typ.to_ascii_lowercase();
        typ.strip_prefix("application/").unwrap_or(&typ) == ACCESS_TOKEN_TYP
    })
}

/// Whether `claims` are past `exp` at `now`, as `jsonwebtoken` judges it (with the leeway).
fn expired(claims: &Claims, now: u64) -> bool {
    claims.exp.saturating_add(LEEWAY_SECS) < now
}

fn unix_secs() -> u64 {
    u64::try_from(unix_now()).unwrap_or_default()
}

fn rejection(error: &jsonwebtoken::errors::Error) -> ServiceError {
    ServiceError::InvalidToken(match error.kind() {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm not allowed",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::MissingRequiredClaim(_) => "missing claim",
        _ => "malformed token",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::TokenKey;

    fn b64(data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(data)
    }

    /// A key that passes every check, told apart from others by `tag`.
    fn key(tag: &str) -> TokenKey {
        TokenKey::try_from(format!("{tag}-0123456789abcdefghijklmnopqrstuv")).unwrap()
    }

    fn defaults() -> AuthSettings {
        crate::Settings::defaults().unwrap().auth
    }

    /// A signer with one key, as `MYAPI_TOKEN_KEY` configures it.
    fn single(byte: &str) -> TokenSigner {
        TokenSigner::new(Some(&key(byte).into()), &defaults())
    }

    /// A signer with a `MYAPI_TOKEN_KEYS` list.
    fn listed(keys: &[(&str, &str)]) -> TokenSigner {
        let keys = keys
            .iter()
            .map(|(kid, byte)| ((*kid).to_owned(), key(byte).into()))
            .collect();
        TokenSigner::new(Some(&TokenKeys::new(keys).unwrap()), &defaults())
    }

    fn signer() -> TokenSigner {
        single("k")
    }

    const SESSION: Session<'static> = Session {
        family_id: "family",
        client_id: "myapi",
    };

    fn valid_claims() -> Claims {
        Claims {
            sub: "1".into(),
            name: "a".into(),
            email: "a@b.c".into(),
            iat: 1,
            exp: 99_999_999_999,
            iss: "myapi".into(),
            aud: "myapi".into(),
            jti: "j".into(),
            stm: "s".into(),
            scope: None,
            sid: None,
            client_id: None,
        }
    }

    /// A token as signed with `byte`'s key under `kid`, or with no `kid` at all, which is how
    /// tokens were issued before key rotation.
    fn signed(kid: Option<&str>, byte: &str) -> String {
        let header = Header {
            kid: kid.map(str::to_owned),
            ..Header::new(Algorithm::HS256)
        };
        let key = EncodingKey::from_secret(key(byte).as_bytes());
        jsonwebtoken::encode(&header, &valid_claims(), &key).unwrap()
    }

    fn kid_of(token: &str) -> Option<String> {
        jsonwebtoken::decode_header(token).unwrap().kid
    }

    fn issue(signer: &TokenSigner) -> String {
        signer
            .issue(1, "a", "a@b.c", "s", "movies:read", SESSION)
            .unwrap()
    }

    #[test]
    fn tokens_name_the_signing_key_in_their_header() {
        let derived = key("0").derived_kid();
        assert_eq!(kid_of(&issue(&single("0"))), Some(derived.clone()));
        let rotated = listed(&[("new", "1"), (&derived, "0")]);
        let header = jsonwebtoken::decode_header(issue(&rotated)).unwrap();
        assert_eq!(
            (header.alg, header.kid.as_deref()),
            (Algorithm::HS256, Some("new"))
        );
    }

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let old = listed(&[("old", "0")]);
        let adding = listed(&[("old", "0"), ("new", "1")]);
        let switched = listed(&[("new", "1"), ("old", "0")]);
        let dropped = listed(&[("new", "1")]);
        for token in [issue(&old), issue(&adding)] {
            assert_eq!(kid_of(&token).as_deref(), Some("old"));
            for verifier in [&old, &adding, &switched] {
                assert!(verifier.verify(&token).is_ok());
            }
            assert!(matches!(
                dropped.verify(&token),
                Err(ServiceError::InvalidToken("unknown key id"))
            ));
        }
        let token = issue(&switched);
        for verifier in [&adding, &switched, &dropped] {
            assert!(verifier.verify(&token).is_ok());
        }
    }

    #[test]
    fn an_unknown_kid_is_refused_and_a_kid_binds_its_key() {
        let signer = listed(&[("old", "0"), ("new", "1")]);
        assert!(matches!(
            signer.verify(&signed(Some("other"), "0")),
            Err(ServiceError::InvalidToken("unknown key id"))
        ));
        assert!(matches!(
            signer.verify(&signed(Some("new"), "0")),
            Err(ServiceError::InvalidToken("bad signature"))
        ));
        assert!(signer.verify(&signed(Some("old"), "0")).is_ok());
    }

    #[test]
    fn a_token_without_kid_is_accepted_only_under_the_single_key_it_was_signed_with() {
        let legacy = signed(None, "0");
        let derived = key("0").derived_kid();
        // MYAPI_TOKEN_KEY, and that key moved into MYAPI_TOKEN_KEYS under its derived kid
        // at any position: the rotation's steps 1 and 2.
        for accepting in [
            single("0"),
            listed(&[(&derived, "0"), ("new", "1")]),
            listed(&[("new", "1"), (&derived, "0")]),
        ] {
            assert_eq!(accepting.verify(&legacy).unwrap(), valid_claims());
        }
        // The key under another kid, the key dropped (step 3), or a random key.
        for refusing in [
            listed(&[("old", "0")]),
            listed(&[("new", "1")]),
            TokenSigner::new(None, &defaults()),
        ] {
            assert!(matches!(
                refusing.verify(&legacy),
                Err(ServiceError::InvalidToken("no key id"))
            ));
        }
        // Another key's kid-less token still needs the single key's signature.
        assert!(matches!(
            single("0").verify(&signed(None, "1")),
            Err(ServiceError::InvalidToken("bad signature"))
        ));
    }

    #[test]
    fn round_trip() {
        let s = signer();
        let token = s
            .issue(7, "Ada", "ada@example.com", "stamp", "movies:read", SESSION)
            .unwrap();
        let claims = s.verify(&token).unwrap();
        assert_eq!(
            (
                claims.sub.as_str(),
                claims.stm.as_str(),
                claims.iss.as_str()
            ),
            ("7", "stamp", "http://127.0.0.1:8000")
        );
        assert_eq!(claims.aud, "myapi");
        assert_eq!(claims.exp - claims.iat, 15 * 60);
        let again = s.verify(
            &s.issue(7, "Ada", "ada@example.com", "stamp", "movies:read", SESSION)
                .unwrap(),
        );
        assert_ne!(again.unwrap().jti, claims.jti, "each token has its own id");
    }

    #[test]
    fn rejects_other_key_expired_garbage_and_alg_none() {
        let s = signer();
        assert!(matches!(
            s.verify(&issue(&single("x"))),
            Err(ServiceError::InvalidToken("unknown key id"))
        ));
        assert!(matches!(
            s.verify(&signed(Some(&key("k").derived_kid()), "x")),
            Err(ServiceError::InvalidToken("bad signature"))
        ));
        assert!(s.verify("garbage").is_err());
        assert!(s.verify("").is_err());

        let claims = r#"{"sub":"1","name":"a","email":"a@b.c","iat":1,"exp":99999999999,"iss":"myapi","aud":"myapi","jti":"j","stm":"s"}"#;
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(claims.as_bytes())
        );
        assert!(s.verify(&none).is_err());

        let expired = Claims {
            sub: "1".into(),
            name: "a".into(),
            email: "a@b.c".into(),
            iat: 1,
            exp: 2,
            iss: "myapi".into(),
            aud: "myapi".into(),
            jti: "j".into(),
            stm: "s".into(),
            scope: None,
            sid: None,
            client_id: None,
        };
        let token = jsonwebtoken::encode(&s.header, &expired, &s.encoding).unwrap();
        assert!(matches!(
            s.verify(&token),
            Err(ServiceError::InvalidToken("token expired"))
        ));

        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                exp: 99_999_999_999,
                ..expired.clone()
            },
            &s.encoding,
        )
        .unwrap();
        assert!(s.verify(&hs512).is_err());

        let wrong_iss = Claims {
            exp: 99_999_999_999,
            iss: "evil".into(),
            ..expired.clone()
        };
        let token = jsonwebtoken::encode(&s.header, &wrong_iss, &s.encoding).unwrap();
        assert!(matches!(
            s.verify(&token),
            Err(ServiceError::InvalidToken("wrong issuer"))
        ));

        let wrong_aud = Claims {
            exp: 99_999_999_999,
            aud: "another-deployment".into(),
            ..expired.clone()
        };
        let token = jsonwebtoken::encode(&s.header, &wrong_aud, &s.encoding).unwrap();
        assert!(matches!(
            s.verify(&token),
            Err(ServiceError::InvalidToken("wrong audience"))
        ));

        let bad_sub = Claims {
            exp: 99_999_999_999,
            sub: "abc".into(),
            ..expired
        };
        let token = jsonwebtoken::encode(&s.header, &bad_sub, &s.encoding).unwrap();
        assert!(s.verify(&token).is_err());
    }

    #[test]
    fn a_memoised_token_answers_as_verify_does_and_is_kept_once() {
        let signer = single("0");
        let token = issue(&signer);
        let first = signer.verify_memoised(&token).unwrap();
        let again = signer.verify_memoised(&token).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second answer comes from memory"
        );
        assert_eq!(*first, signer.verify(&token).unwrap());
        assert_eq!(signer.memo().len(), 1);
        // Another key's signer has its own memory: the token means nothing there.
        assert!(single("1").verify_memoised(&token).is_err());
    }

    #[test]
    fn a_memoised_token_still_expires() {
        let signer = single("0");
        let now = unix_secs();
        // Well inside and well past the leeway, so a second ticking over cannot matter.
        for (exp, accepted) in [(now, true), (now - LEEWAY_SECS - 2, false)] {
            let token = format!("remembered-{exp}");
            let claims = Claims {
                exp,
                ..valid_claims()
            };
            signer.memo().insert(
                token.as_str().into(),
                Arc::new(claims),
                Instant::now(),
                |_| Retention::Normal,
            );
            match signer.verify_memoised(&token) {
                Ok(_) => assert!(accepted, "exp {exp} at {now} was accepted"),
                Err(ServiceError::InvalidToken("token expired")) => assert!(!accepted),
                Err(other) => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn failures_are_not_memoised() {
        let signer = single("0");
        let forged = signed(Some(&key("0").derived_kid()), "1");
        for _ in 0..2 {
            assert!(matches!(
                signer.verify_memoised(&forged),
                Err(ServiceError::InvalidToken("bad signature"))
            ));
        }
        assert_eq!(signer.memo().len(), 0);
    }

    /// Tokens from before `auth.issuer` carry the old default `iss`: HS256 ones (all there
    /// were) still verify; an EdDSA one never had it.
    #[test]
    fn the_legacy_issuer_is_accepted_on_hs256_tokens_only() {
        let legacy = Claims {
            iss: LEGACY_ISSUER.into(),
            ..valid_claims()
        };
        let hs256 = single("0");
        let token = jsonwebtoken::encode(&hs256.header, &legacy, &hs256.encoding).unwrap();
        assert_eq!(hs256.verify(&token).unwrap().iss, LEGACY_ISSUER);

        let eddsa = TokenSigner::new(Some(&TokenKeys::random()), &defaults());
        assert_eq!(eddsa.header.alg, Algorithm::EdDSA);
        assert_eq!(
            eddsa.verify(&issue(&eddsa)).unwrap().iss,
            "http://127.0.0.1:8000"
        );
        let token = jsonwebtoken::encode(&eddsa.header, &legacy, &eddsa.encoding).unwrap();
        assert!(matches!(
            eddsa.verify(&token),
            Err(ServiceError::InvalidToken("wrong issuer"))
        ));
    }
}

//! HS256 access tokens: issue and verify, with `exp`, `iss`, `aud` and `sub` enforced.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ServiceError;
use crate::config::{AuthSettings, TokenKey};

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

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
}

impl Claims {
    pub fn user_id(&self) -> Result<i32, ServiceError> {
        self.sub
            .parse()
            .map_err(|_| ServiceError::InvalidToken("malformed subject"))
    }
}

/// Signs and verifies tokens with one HS256 key.
#[derive(Clone)]
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    lifetime: Duration,
}

impl TokenSigner {
    /// A signer using `key`, or a random per-process key when `None` (tokens then do not
    /// survive a restart nor work across instances; the server warns about it).
    pub fn new(key: Option<&TokenKey>, settings: &AuthSettings) -> Self {
        let key_bytes = match key {
            Some(key) => key.as_bytes().to_vec(),
            None => {
                let mut bytes = vec![0u8; 32];
                OsRng.fill_bytes(&mut bytes);
                bytes
            }
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[&settings.token_issuer]);
        validation.set_audience(&[&settings.token_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(&key_bytes),
            decoding: DecodingKey::from_secret(&key_bytes),
            validation,
            issuer: settings.token_issuer.clone(),
            audience: settings.token_audience.clone(),
            lifetime: Duration::from_secs(settings.token_lifetime_minutes.get().saturating_mul(60)),
        }
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
    ) -> Result<String, ServiceError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
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
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ServiceError::internal("token signing failed", e))
    }

    /// Verifies signature, algorithm, `exp`, `iss`, `aud` and `sub`; CPU only, never blocks.
    pub fn verify(&self, token: &str) -> Result<Claims, ServiceError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                ServiceError::InvalidToken(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired",
                    ErrorKind::InvalidSignature => "bad signature",
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        "algorithm not allowed"
                    }
                    ErrorKind::InvalidIssuer => "wrong issuer",
                    ErrorKind::InvalidAudience => "wrong audience",
                    ErrorKind::MissingRequiredClaim(_) => "missing claim",
                    _ => "malformed token",
                })
            })?;
        data.claims.user_id()?;
        Ok(data.claims)
    }
}

/// 128 random bits, base64url: token ids and security stamps.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn b64(data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(data)
    }

    fn key(byte: &str) -> TokenKey {
        TokenKey::try_from(byte.repeat(32)).unwrap()
    }

    fn defaults() -> AuthSettings {
        crate::Settings::defaults().unwrap().auth
    }

    fn signer() -> TokenSigner {
        TokenSigner::new(Some(&key("k")), &defaults())
    }

    #[test]
    fn round_trip() {
        let s = signer();
        let token = s.issue(7, "Ada", "ada@example.com", "stamp").unwrap();
        let claims = s.verify(&token).unwrap();
        assert_eq!(
            (
                claims.sub.as_str(),
                claims.stm.as_str(),
                claims.iss.as_str()
            ),
            ("7", "stamp", "myapi")
        );
        assert_eq!(claims.aud, "myapi");
        assert_eq!(claims.exp - claims.iat, 30 * 60);
        let again = s.verify(&s.issue(7, "Ada", "ada@example.com", "stamp").unwrap());
        assert_ne!(again.unwrap().jti, claims.jti, "each token has its own id");
    }

    #[test]
    fn rejects_other_key_expired_garbage_and_alg_none() {
        let s = signer();
        let other = TokenSigner::new(Some(&key("x")), &defaults());
        let token = other.issue(1, "a", "a@b.c", "s").unwrap();
        assert!(matches!(
            s.verify(&token),
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
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &expired, &s.encoding).unwrap();
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
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &wrong_iss, &s.encoding).unwrap();
        assert!(matches!(
            s.verify(&token),
            Err(ServiceError::InvalidToken("wrong issuer"))
        ));

        let wrong_aud = Claims {
            exp: 99_999_999_999,
            aud: "another-deployment".into(),
            ..expired.clone()
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &wrong_aud, &s.encoding).unwrap();
        assert!(matches!(
            s.verify(&token),
            Err(ServiceError::InvalidToken("wrong audience"))
        ));

        let bad_sub = Claims {
            exp: 99_999_999_999,
            sub: "abc".into(),
            ..expired
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &bad_sub, &s.encoding).unwrap();
        assert!(s.verify(&token).is_err());
    }
}

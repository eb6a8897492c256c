//! The `auth` service: users, password login (OAuth2 password grant) and bearer tokens.
//!
//! Blocking: everything here that touches the database or argon2 must run off the async
//! workers (web wraps calls in `web::block`). [`AuthService::verify_token`] and
//! [`AuthService::cached_user`] are CPU-only and may run inline.

mod data;
mod password;
mod throttle;
mod tokens;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use data::UserDataManager;
pub use password::{HashPool, HashTicket, PasswordHasher};
pub use throttle::LoginThrottle;
pub use tokens::{Claims, TokenSigner};

use myapi_models::rows::{NewUserRow, UserRow};
use myapi_schemas::{TokenResponse, UserSchema};
use tokio::sync::oneshot;

use crate::ServiceError;
use crate::config::Settings;
use crate::database::Database;

/// Seconds a client should wait when hashing is saturated.
const BUSY_RETRY_AFTER_SECS: u64 = 1;
/// Most cached revocation checks kept at once.
const MAX_CACHED_USERS: usize = 50_000;

/// A normalised email: trimmed, lower-case, plausibly an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses and normalises an email address.
    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        let email = raw.trim().to_lowercase();
        let invalid = |message: &str| Err(ServiceError::invalid("email", message));
        if email.is_empty() || email.len() > 254 {
            return invalid("must be 1 to 254 characters");
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid("must not contain spaces or control characters");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return invalid("must contain @");
        };
        if local.is_empty()
            || local.contains('@')
            || domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return invalid("is not a valid email address");
        }
        Ok(Self(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    /// Parses a display name.
    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ServiceError::invalid("name", "must be 1 to 200 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(ServiceError::invalid(
                "name",
                "must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }
}

/// A password within the configured length bounds.
pub struct Password(String);

impl Password {
    /// Checks the length (in characters) against the policy.
    pub fn parse(raw: String, min_chars: usize, max_chars: usize) -> Result<Self, ServiceError> {
        let chars = raw.chars().count();
        if chars < min_chars || chars > max_chars {
            return Err(ServiceError::invalid(
                "password",
                format!("must be {min_chars} to {max_chars} characters"),
            ));
        }
        Ok(Self(raw))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// One `/token` attempt.
pub struct LoginAttempt<'a> {
    /// The OAuth2 `username` (an email).
    pub username: &'a str,
    /// The password as sent.
    pub password: &'a str,
    /// Where the attempt came from, for throttling.
    pub client_ip: IpAddr,
}

/// A login after step 1: throttling passed and the user looked up.
pub struct PreparedLogin {
    account: String,
    client_ip: IpAddr,
    user: Option<UserRow>,
    plausible: bool,
}

/// A login after step 2: whether the password matched.
pub struct CheckedLogin {
    prepared: PreparedLogin,
    verified: bool,
    upgraded_hash: Option<String>,
}

impl CheckedLogin {
    /// Whether finishing stores an upgraded hash (and so touches the database).
    pub fn stores_upgraded_hash(&self) -> bool {
        self.upgraded_hash.is_some()
    }
}

/// Users, login and tokens.
#[derive(Clone)]
pub struct AuthService {
    users: UserDataManager,
    hasher: PasswordHasher,
    hashing: Arc<HashPool>,
    throttle: Arc<LoginThrottle>,
    signer: TokenSigner,
    dummy_hash: Arc<str>,
    password_chars: (usize, usize),
    revocation_cache: Arc<Mutex<HashMap<i32, CachedUser>>>,
    revocation_ttl: Duration,
}

#[derive(Debug, Clone)]
struct CachedUser {
    checked_at: Instant,
    user: Option<(i32, UserSchema)>,
}

impl AuthService {
    /// Builds the service (no hashing: unknown users are verified against an unmatchable hash
    /// with the current parameters, so they cost the same as known ones).
    pub fn new(db: Database, settings: &Settings) -> Result<Self, ServiceError> {
        let auth = &settings.auth;
        let hasher = PasswordHasher::new(auth)
            .map_err(|e| ServiceError::invalid("auth.argon2_*", e.to_string()))?;
        let dummy_hash = hasher.unmatchable_hash()?;
        let concurrency = match auth.hash_concurrency {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        Ok(Self {
            users: UserDataManager::new(db),
            hasher,
            hashing: HashPool::new(concurrency, auth.hash_queue),
            throttle: Arc::new(LoginThrottle::new(auth)),
            signer: TokenSigner::new(settings.token_key.as_ref(), auth),
            dummy_hash: dummy_hash.into(),
            password_chars: (auth.password_min_chars, auth.password_max_chars),
            revocation_cache: Arc::default(),
            revocation_ttl: Duration::from_millis(auth.revocation_cache_ms),
        })
    }

    fn parse_password(&self, raw: String) -> Result<Password, ServiceError> {
        Password::parse(raw, self.password_chars.0, self.password_chars.1)
    }

    /// Creates a user (blocking). The email is stored lower-case; a duplicate is a conflict.
    pub fn create_user(
        &self,
        name: &str,
        email: &str,
        password: String,
    ) -> Result<UserSchema, ServiceError> {
        let (name, email) = collect_invalid(UserName::parse(name), Email::parse(email))?;
        let password = self.parse_password(password)?;
        let hashed_password = self.hasher.hash(&password.0)?;
        let row = self.users.insert(&NewUserRow {
            name: &name.0,
            email: email.as_str(),
            hashed_password: &hashed_password,
        })?;
        Ok(to_schema(&row))
    }

    /// All users, by id (blocking).
    pub fn list_users(&self) -> Result<Vec<UserSchema>, ServiceError> {
        Ok(self.users.list()?.iter().map(to_schema).collect())
    }

    /// Deletes a user; their tokens stop working within the revocation cache time (blocking).
    pub fn delete_user(&self, email: &str) -> Result<(), ServiceError> {
        let email = Email::parse(email)?;
        if self.users.delete_by_email(email.as_str())? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!(
                "no user with email {}",
                email.as_str()
            )))
        }
    }

    /// Sets a new password and revokes the user's outstanding tokens (blocking).
    pub fn set_password(&self, email: &str, password: String) -> Result<(), ServiceError> {
        let email = Email::parse(email)?;
        let password = self.parse_password(password)?;
        let hashed_password = self.hasher.hash(&password.0)?;
        if self.users.set_password(email.as_str(), &hashed_password)? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!(
                "no user with email {}",
                email.as_str()
            )))
        }
    }

    /// A place in the hashing queue for one login, or [`ServiceError::Busy`] at once.
    pub fn admit_login(&self) -> Result<HashTicket, ServiceError> {
        self.hashing.try_admit().ok_or(ServiceError::Busy {
            retry_after_secs: BUSY_RETRY_AFTER_SECS,
        })
    }

    /// Login step 1 (blocking: one query): throttling, then the user lookup.
    pub fn prepare_login(&self, attempt: &LoginAttempt<'_>) -> Result<PreparedLogin, ServiceError> {
        let account = attempt.username.trim().to_lowercase();
        self.throttle
            .check(&account, attempt.client_ip)
            .map_err(|retry_after_secs| ServiceError::TooManyAttempts { retry_after_secs })?;
        // A password longer than any we accept cannot match: no lookup, no hashing.
        let plausible = attempt.password.chars().count() <= self.password_chars.1;
        let user = if plausible {
            self.users.find_by_email(&account)?
        } else {
            None
        };
        Ok(PreparedLogin {
            account,
            client_ip: attempt.client_ip,
            user,
            plausible,
        })
    }

    /// Login step 2 (never blocks): queues the argon2 check on the hashing threads — against
    /// a dummy hash when the user is unknown, so both cases cost the same — plus a fresh
    /// hash when the stored one has outdated parameters. Await the receiver (or
    /// `blocking_recv` it) for the result.
    pub fn check_password(
        &self,
        ticket: HashTicket,
        prepared: PreparedLogin,
        password: String,
    ) -> Result<oneshot::Receiver<CheckedLogin>, ServiceError> {
        let hasher = self.hasher.clone();
        let dummy_hash = Arc::clone(&self.dummy_hash);
        ticket.spawn(move || {
            if !prepared.plausible {
                return CheckedLogin {
                    prepared,
                    verified: false,
                    upgraded_hash: None,
                };
            }
            let stored = prepared
                .user
                .as_ref()
                .map_or(&*dummy_hash, |u| u.hashed_password.as_str());
            let verified = hasher.verify(&password, stored) && prepared.user.is_some();
            let upgraded_hash = (verified && hasher.needs_rehash(stored))
                .then(|| hasher.hash(&password).ok())
                .flatten();
            CheckedLogin {
                prepared,
                verified,
                upgraded_hash,
            }
        })
    }

    /// Login step 3: records the outcome for throttling and issues the token. Blocking only
    /// when [`CheckedLogin::stores_upgraded_hash`] (one update query).
    pub fn finish_login(&self, checked: CheckedLogin) -> Result<TokenResponse, ServiceError> {
        let CheckedLogin {
            prepared,
            verified,
            upgraded_hash,
        } = checked;
        let user = match prepared.user {
            Some(user) if verified => user,
            _ => {
                self.throttle
                    .record_failure(&prepared.account, prepared.client_ip);
                return Err(ServiceError::InvalidCredentials);
            }
        };
        self.throttle
            .record_success(&prepared.account, prepared.client_ip);
        if let Some(new_hash) = upgraded_hash {
            self.users
                .upgrade_hash(user.user_id, &user.hashed_password, &new_hash)?;
        }
        let access_token =
            self.signer
                .issue(user.user_id, &user.name, &user.email, user.token_version)?;
        Ok(TokenResponse {
            access_token,
            token_type: "bearer".into(),
            expires_in: self.signer.lifetime_secs(),
        })
    }

    /// The whole login on the calling thread (blocking), for the CLI and tests.
    pub fn login(&self, attempt: &LoginAttempt<'_>) -> Result<TokenResponse, ServiceError> {
        let ticket = self.admit_login()?;
        let prepared = self.prepare_login(attempt)?;
        let checked = self
            .check_password(ticket, prepared, attempt.password.to_owned())?
            .blocking_recv()
            .map_err(|_| ServiceError::Internal("password check was lost".into()))?;
        self.finish_login(checked)
    }

    /// Verifies a bearer token's signature and claims (CPU only, never blocks).
    pub fn verify_token(&self, token: &str) -> Result<Claims, ServiceError> {
        self.signer.verify(token)
    }

    /// The token's user from the revocation cache, if checked recently (never blocks).
    pub fn cached_user(&self, claims: &Claims) -> Option<Result<UserSchema, ServiceError>> {
        let user_id = claims.user_id().ok()?;
        let cache = self
            .revocation_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = cache.get(&user_id)?;
        (entry.checked_at.elapsed() < self.revocation_ttl)
            .then(|| accept(claims, entry.user.as_ref()))
    }

    /// The token's user, checked against the database: the user must still exist and the
    /// token's version must be current (blocking; the answer is cached briefly).
    pub fn load_user(&self, claims: &Claims) -> Result<UserSchema, ServiceError> {
        let user_id = claims.user_id()?;
        let user = self
            .users
            .find_by_id(user_id)?
            .map(|row| (row.token_version, to_schema(&row)));
        let result = accept(claims, user.as_ref());
        let mut cache = self
            .revocation_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_USERS {
            cache.clear();
        }
        cache.insert(
            user_id,
            CachedUser {
                checked_at: Instant::now(),
                user,
            },
        );
        result
    }
}

fn accept(claims: &Claims, user: Option<&(i32, UserSchema)>) -> Result<UserSchema, ServiceError> {
    match user {
        Some((version, user)) if *version == claims.ver => Ok(user.clone()),
        _ => Err(ServiceError::InvalidToken("token revoked")),
    }
}

fn to_schema(row: &UserRow) -> UserSchema {
    UserSchema {
        user_id: row.user_id,
        name: row.name.clone(),
        email: row.email.clone(),
    }
}

/// Both values, or every field error of the two.
fn collect_invalid<A, B>(
    a: Result<A, ServiceError>,
    b: Result<B, ServiceError>,
) -> Result<(A, B), ServiceError> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(ServiceError::Invalid(mut x)), Err(ServiceError::Invalid(y))) => {
            x.extend(y);
            Err(ServiceError::Invalid(x))
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@com",
            "a b@example.com",
            "ada@ex..com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn password_bounds() {
        assert!(Password::parse("1234567".into(), 8, 16).is_err());
        assert!(Password::parse("12345678".into(), 8, 16).is_ok());
        assert!(Password::parse("x".repeat(17), 8, 16).is_err());
        assert_eq!(
            format!(
                "{:?}",
                Password::parse("secret-password".into(), 8, 64).unwrap()
            ),
            "Password(***)"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(UserName::parse("  ").is_err());
        assert!(UserName::parse("a\u{0}b").is_err());
        assert!(UserName::parse(" Ada ").is_ok());
    }
}

//! The `auth` service: users, password login (OAuth2 password grant) and bearer tokens.
//!
//! [`AuthService::login`] and [`AuthService::authenticate`] are async and keep their
//! blocking parts (queries, argon2) off the caller's thread. The user administration
//! methods block: async callers run them on a blocking pool.

mod accounts;
mod audit_trail;
mod budget;
pub(crate) mod credentials;
mod data;
pub mod keys;
mod memory_budget;
mod password;
mod postgres_budget;
mod refresh_secret;
mod roles;
mod tokens;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipnet::IpNet;

pub use budget::{Attempt, BudgetError, BudgetKeys, LoginBudget, Reservation};
pub use credentials::{ClientId, ClientRefusal, Clients, Credentials, Email, Password, UserName};
pub use data::{Rotation, SessionDataManager, SignUp, Successor, UserDataManager, is_live};
pub use keys::{JwsKey, KeyError, KeyFileError, TokenKey, TokenKeyError, TokenKeys};
pub use memory_budget::{MAX_TRACKED_KEYS, MemoryBudget};
pub use password::{CheckTimes, HashPool, PasswordHasher};
pub use postgres_budget::PostgresBudget;
pub use roles::{RequiredScope, Role, SCOPE_GRANTS, SCOPES, Scopes, scope};
pub use tokens::{Claims, Session, TokenSigner};

use myapi_models::rows::{NewUserRow, RefreshFamilyRow, RefreshTokenRow, UserRow};
use myapi_schemas::{IntrospectionResponse, JsonWebKeySet, TokenResponse, UserSchema};

use crate::audit::{Actor, AuditDataManager, AuditEntry, AuditEvent, unix_now};
use crate::bounded::{BoundedMap, Retention};
use crate::config::{PasswordReset, Registration, Settings};
use crate::database::Database;
use crate::hooks::{Hooks, Point};
use crate::mail::MailOutbox;
use crate::query::{Page, PageSizes};
use crate::request_context::blocking;
use crate::secrets::{random_bytes, random_id, random_secret};
use crate::{InvalidField, ServiceError};
use credentials::normalise_email;
use refresh_secret::{hash_secret, open_successor, seal_successor};

/// Seconds a client should wait when hashing is saturated.
const BUSY_RETRY_AFTER_SECS: u64 = 1;
/// Sessions the bearer check remembers, at a few hundred bytes each.
const MAX_CACHED_SESSIONS: usize = 50_000;

/// Why a login was refused. Web maps each to its RFC 6749 §5.2 answer.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password: deliberately indistinguishable.
    #[error("incorrect username or password")]
    InvalidGrant,
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// An unknown scope was asked for, or none the user's role allows.
    #[error("{0}")]
    InvalidScope(String),
    /// Too many failed logins from this client or for this account.
    #[error("too many failed login attempts; retry in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// Every hashing thread and queue place is taken.
    #[error("server busy; retry in {retry_after_secs} s")]
    Saturated { retry_after_secs: u64 },
    /// Unknown, expired, used or revoked: which one is not told.
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    /// A `client_id` that `auth.client_ids` does not list.
    #[error("{0}")]
    InvalidClient(&'static str),
    /// The password was right, but the account signed up and has not followed its mail's
    /// link yet: told only after a correct password, so it tells nothing about the address.
    #[error(
        "the email address of this account is not verified yet: follow the link in the sign-up mail"
    )]
    Unverified,
    /// `/revoke` was given an access token, which cannot be revoked on its own.
    #[error("access tokens cannot be revoked; revoke the refresh token")]
    UnsupportedTokenType,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<ClientRefusal> for LoginError {
    fn from(refusal: ClientRefusal) -> Self {
        match refusal {
            ClientRefusal::Malformed(why) => Self::InvalidRequest(why),
            ClientRefusal::Unlisted => Self::InvalidClient("unknown client_id"),
        }
    }
}

impl From<BudgetError> for LoginError {
    fn from(error: BudgetError) -> Self {
        match error {
            BudgetError::Exhausted { retry_after_secs } => Self::Throttled { retry_after_secs },
            BudgetError::Store(error) => Self::Service(error),
        }
    }
}

/// Users, login and tokens.
#[derive(Clone)]
pub struct AuthService {
    users: UserDataManager,
    sessions: SessionDataManager,
    audit: AuditDataManager,
    refresh_lifetime_secs: i64,
    session_max_secs: i64,
    reuse_grace_secs: i64,
    hasher: PasswordHasher,
    check_times: Arc<CheckTimes>,
    /// Keys [`AuthService::username_digest`].
    audit_digest_key: Arc<[u8; 64]>,
    hooks: Hooks,
    hashing: Arc<HashPool>,
    budget: Arc<dyn LoginBudget>,
    budget_keys: BudgetKeys,
    clients: Clients,
    signer: TokenSigner,
    /// What unknown users are checked against, so they cost what known ones do.
    dummy_hash: Arc<str>,
    password_chars: (usize, usize),
    page_sizes: PageSizes,
    revocation_cache: Arc<Mutex<BoundedMap<SessionKey, CachedSession>>>,
    revocation_ttl: Duration,
    /// Where the mails of account changes are queued.
    outbox: MailOutbox,
    registration: Registration,
    verification_ttl_secs: i64,
    /// Sign-ups per client network and per address: buckets of their own, in the login
    /// budget's store.
    signup_budget: Arc<dyn LoginBudget>,
    password_reset: PasswordReset,
    reset_ttl_secs: i64,
    /// Reset requests per client network and per address: buckets of their own.
    reset_budget: Arc<dyn LoginBudget>,
}

/// A bearer token's user id and session (its `sid`; `None` in tokens from before tokens
/// named one).
type SessionKey = (i32, Option<Box<str>>);

#[derive(Debug, Clone)]
struct CachedSession {
    checked_at: Instant,
    /// `None` once the user is deleted. Shared: every request of the session reads it.
    holder: Option<Arc<SessionHolder>>,
}

/// A session's user as the database last said, and whether the session is still live.
#[derive(Debug, Clone)]
struct SessionHolder {
    stamp: String,
    role: Role,
    user: UserSchema,
    session_live: bool,
}

/// The user of a valid bearer token, and what the token lets them do now: the token's
/// scopes narrowed to what the user's current role allows.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    pub user: UserSchema,
    pub scopes: Scopes,
    /// The token's `client_id`; `None` in tokens from before tokens named one.
    pub client_id: Option<String>,
}

impl AuthService {
    pub fn new(
        db: Database,
        settings: &Settings,
        hooks: Hooks,
        outbox: MailOutbox,
    ) -> Result<Self, ServiceError> {
        let auth = &settings.auth;
        let params = auth
            .argon2_params()
            .map_err(|e| ServiceError::invalid("auth.argon2_*", e.to_string()))?;
        let hasher = PasswordHasher::new(params);
        let dummy_hash = hasher.unmatchable_hash()?;
        let shared = auth.login_budget.is_shared(&db, "auth.login_budget")?;
        let budget: Arc<dyn LoginBudget> = if shared {
            Arc::new(PostgresBudget::new(db.clone(), auth))
        } else {
            Arc::new(MemoryBudget::new(auth))
        };
        let signup_limits = (
            budget::Limit::new(auth.signup_ip_burst.get(), auth.signup_ip_refill_secs),
            budget::Limit::new(
                auth.signup_account_burst.get(),
                auth.signup_account_refill_secs,
            ),
        );
        // Buckets of their own: a namespace of keys in the shared store, or a store apart.
        let own_budget = |(client, account): (budget::Limit, budget::Limit),
                          namespace: &'static [u8]|
         -> Arc<dyn LoginBudget> {
            if shared {
                Arc::new(PostgresBudget::with_limits(
                    db.clone(),
                    client,
                    account,
                    namespace,
                ))
            } else {
                Arc::new(MemoryBudget::with_limits(client, account))
            }
        };
        let signup_budget = own_budget(signup_limits, b"s");
        let reset_budget = own_budget(
            (
                budget::Limit::new(auth.reset_ip_burst.get(), auth.reset_ip_refill_secs),
                budget::Limit::new(
                    auth.reset_account_burst.get(),
                    auth.reset_account_refill_secs,
                ),
            ),
            b"r",
        );
        Ok(Self {
            users: UserDataManager::new(db.clone()),
            audit: AuditDataManager::new(db.clone()),
            sessions: SessionDataManager::new(db, hooks.clone()),
            refresh_lifetime_secs: secs(
                auth.refresh_token_lifetime_days
                    .get()
                    .saturating_mul(86_400),
            ),
            session_max_secs: secs(auth.session_max_days.get().saturating_mul(86_400)),
            reuse_grace_secs: secs(auth.refresh_reuse_grace_secs),
            hasher,
            check_times: Arc::default(),
            audit_digest_key: Arc::new(audit_digest_key(settings)),
            hooks,
            hashing: HashPool::new(auth.hash_concurrency.get(), auth.hash_queue),
            budget,
            budget_keys: BudgetKeys::new(auth),
            clients: Clients::new(&auth.client_ids, &auth.default_client_id)
                .map_err(|(key, message)| ServiceError::invalid(key, message))?,
            signer: TokenSigner::new(settings.token_key.as_ref(), auth),
            dummy_hash: dummy_hash.into(),
            password_chars: (auth.password_min_chars.get(), auth.password_max_chars),
            page_sizes: PageSizes {
                default: settings.users.default_page_size,
                max: settings.users.max_page_size.get(),
            },
            revocation_cache: Arc::new(Mutex::new(BoundedMap::new(MAX_CACHED_SESSIONS))),
            revocation_ttl: Duration::from_millis(auth.revocation_cache_ms),
            outbox,
            registration: auth.registration,
            verification_ttl_secs: secs(
                u64::from(auth.verification_ttl_hours.get()).saturating_mul(3600),
            ),
            signup_budget,
            password_reset: auth.password_reset,
            reset_ttl_secs: secs(u64::from(auth.reset_ttl_minutes.get()).saturating_mul(60)),
            reset_budget,
        })
    }

    fn parse_password(&self, raw: String) -> Result<Password, InvalidField> {
        Password::parse(raw, self.password_chars.0, self.password_chars.1)
    }

    /// Creates a user (blocking). The email is stored lower-case; a duplicate is a conflict.
    pub fn create_user(
        &self,
        name: &str,
        email: &str,
        password: String,
        role: Role,
    ) -> Result<UserSchema, ServiceError> {
        let (name, email, password) = match (
            UserName::parse(name),
            Email::parse(email),
            self.parse_password(password),
        ) {
            (Ok(name), Ok(email), Ok(password)) => (name, email, password),
            (name, email, password) => {
                let fields = [name.err(), email.err(), password.err()];
                return Err(ServiceError::Invalid(
                    fields.into_iter().flatten().collect(),
                ));
            }
        };
        let hashed_password = self.hasher.hash(&password.0)?;
        let audit = AuditEntry::new(AuditEvent::UserCreated, Actor::Cli)
            .email(email.as_str())
            .detail(role.as_str());
        let row = self.users.insert(
            &NewUserRow {
                name: &name.0,
                email: email.as_str(),
                hashed_password: &hashed_password,
                security_stamp: &random_id(),
                role: role.as_str(),
                email_verified: true,
            },
            &audit,
        )?;
        Ok(to_schema(&row))
    }

    /// Gives a user another role; their tokens' scopes follow within the revocation window
    /// (blocking).
    pub fn set_role(&self, email: &str, role: Role) -> Result<Email, ServiceError> {
        let email = Email::parse(email)?;
        let audit = AuditEntry::new(AuditEvent::RoleChanged, Actor::Cli).email(email.as_str());
        if self.users.set_role(email.as_str(), role.as_str(), &audit)? {
            Ok(email)
        } else {
            Err(no_such_user(email.as_str()))
        }
    }

    /// This API's base URL as tokens name it in `iss` (`auth.issuer`).
    pub fn issuer(&self) -> &str {
        self.signer.issuer()
    }

    /// The public keys of `/.well-known/jwks.json`.
    pub fn published_keys(&self) -> &JsonWebKeySet {
        self.signer.published_keys()
    }

    /// `limit` when none is given, and the largest accepted.
    pub fn page_sizes(&self) -> PageSizes {
        self.page_sizes
    }

    /// One page of users, by id (`limit`, `offset` as for movies; blocking).
    pub fn users_page(&self, page: Page) -> Result<UserPage, ServiceError> {
        let limit = i64::from(page.limit);
        let mut rows = self.users.page(limit + 1, page.offset)?;
        let has_more = rows.len() as i64 > limit;
        rows.truncate(page.limit as usize);
        Ok(UserPage {
            users: rows.iter().map(to_schema).collect(),
            next: has_more.then_some(Page {
                offset: page.offset + limit,
                ..page
            }),
        })
    }

    /// All users, by id (blocking; for the CLI).
    pub fn list_users(&self) -> Result<Vec<UserSchema>, ServiceError> {
        Ok(self.users.list()?.iter().map(to_schema).collect())
    }

    /// Deletes the user stored with exactly this (trimmed, lower-case) email, even one the
    /// email rule would refuse today; their tokens stop working within the revocation
    /// window (blocking). Returns the email matched.
    pub fn delete_user(&self, email: &str) -> Result<String, ServiceError> {
        let email = normalise_email(email);
        let audit = AuditEntry::new(AuditEvent::UserDeleted, Actor::Cli);
        if self.users.delete_by_email(&email, &audit)? {
            Ok(email)
        } else {
            Err(no_such_user(&email))
        }
    }

    /// Sets a new password and a new security stamp, which revokes the user's access and
    /// refresh tokens and forgets the client networks trusted to pass a throttled account
    /// (blocking).
    pub fn set_password(&self, email: &str, password: String) -> Result<Email, ServiceError> {
        let email = Email::parse(email)?;
        let password = self.parse_password(password)?;
        let hashed_password = self.hasher.hash(&password.0)?;
        let audit = AuditEntry::new(AuditEvent::PasswordChanged, Actor::Cli).email(email.as_str());
        if self.users.set_password(
            email.as_str(),
            &hashed_password,
            &random_id(),
            unix_now(),
            &audit,
        )? {
            Ok(email)
        } else {
            Err(no_such_user(email.as_str()))
        }
    }

    /// The OAuth2 password grant: the login budget, the user lookup, the password check (on
    /// the hashing threads, against a dummy hash for unknown users so both cost the same), a
    /// rehash when the stored hash has outdated parameters, and the token.
    ///
    /// Saturation is refused at once; a login waiting for a hashing thread holds no thread.
    /// The attempt is reserved against the client's and the account's budgets before it
    /// waits, so concurrent guesses cannot outrun them. A shared (database) budget is asked
    /// on the blocking hops the login makes anyway: the reservation goes with the user
    /// lookup, the refund of a success with the new session.
    pub async fn login(
        &self,
        credentials: Credentials,
        client: IpAddr,
    ) -> Result<TokenResponse, LoginError> {
        credentials.check().map_err(LoginError::InvalidRequest)?;
        let client_id = self.clients.resolve(credentials.client_id.as_deref())?;
        let asked = credentials
            .scope
            .as_deref()
            .map(Scopes::parse_request)
            .transpose()
            .map_err(LoginError::InvalidScope)?
            .flatten();
        let account = normalise_email(&credentials.username);
        let attempt = self.budget_keys.attempt(&account, client);
        // A throttled client is turned away before it takes a hashing place or a lookup,
        // and before any account's bucket is written: one read that takes no lock.
        let network = attempt.client;
        self.budget_step(move |budget| budget.check_client(&network))
            .await?;
        let ticket = self.hashing.try_admit().ok_or(LoginError::Saturated {
            retry_after_secs: BUSY_RETRY_AFTER_SECS,
        })?;
        // Neither a username outside the email rule nor a password longer than any we
        // accept can match: no lookup, no hashing.
        let plausible = Email::parse(&account).is_ok()
            && credentials.password.chars().count() <= self.password_chars.1;
        if !plausible {
            self.budget_step(move |budget| budget.reserve(&attempt, None))
                .await?;
            self.audit_failed_login(&account, None, client, None)
                .await?;
            return Err(LoginError::InvalidGrant);
        }
        let audit_account = account.clone();
        let (users, budget) = (self.users.clone(), Arc::clone(&self.budget));
        let (user, reservation) = blocking(move || {
            let user = users.find_by_email(&account)?;
            let stamp = user.as_ref().map(|u| u.security_stamp.as_str());
            Ok(budget
                .reserve(&attempt, stamp)
                .map(|charged| (user, charged)))
        })
        .await??;

        let known = user.as_ref().map(|u| (u.user_id, u.email.clone()));
        let checked = ticket
            .run(self.password_check(user, credentials.password))
            .await;
        let (user, upgraded_hash) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                self.cancel_reservation(reservation).await;
                return Err(error.into());
            }
        };
        // A wrong password keeps its reservation: it was a failure.
        let Some(user) = user else {
            self.audit_failed_login(&audit_account, known, client, None)
                .await?;
            return Err(LoginError::InvalidGrant);
        };
        // A refused scope, or an unverified account, still refunds the reservation: the
        // password was right.
        let granted = if user.email_verified {
            grant_scopes(&user, asked.as_ref(), None)
        } else {
            Err(LoginError::Unverified)
        };
        let (refresh_token, session) = match &granted {
            Ok(granted) => {
                let (token, rows) = self.new_session(&user, granted, &client_id);
                (token, Some(rows))
            }
            Err(_) => (String::new(), None),
        };
        let family_id = session
            .as_ref()
            .map(|(family, _)| family.family_id.clone())
            .unwrap_or_default();
        let (budget, users, sessions, hooks) = (
            Arc::clone(&self.budget),
            self.users.clone(),
            self.sessions.clone(),
            self.hooks.clone(),
        );
        let stamp = user.security_stamp.clone();
        let audit = AuditEntry::new(AuditEvent::LoginSucceeded, Actor::User(user.user_id))
            .user_id(user.user_id)
            .email(&user.email)
            .client(client)
            .detail(
                granted
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            );
        let upgrade =
            upgraded_hash.map(|new_hash| (user.user_id, user.hashed_password.clone(), new_hash));
        let current = blocking(move || {
            hooks.reach(Point::LoginVerified);
            // The session starts only under the stamp the password was checked against:
            // a password change meanwhile ends this login too (its reservation stays).
            if let Some((family, first)) = session
                && !sessions.start(&family, &first, &audit)?
            {
                return Ok(false);
            }
            budget.release(&reservation, Some(&stamp))?;
            if let Some((user_id, old_hash, new_hash)) = upgrade {
                users.upgrade_hash(user_id, &old_hash, &new_hash)?;
            }
            Ok(true)
        })
        .await?;
        if !current {
            let why = Some("the password changed while it was checked");
            self.audit_failed_login(&audit_account, known, client, why)
                .await?;
            return Err(LoginError::InvalidGrant);
        }
        let granted = match granted {
            Ok(granted) => granted,
            Err(refused) => {
                let why = Some(match refused {
                    LoginError::Unverified => "right password, email not verified",
                    _ => "right password, refused scope",
                });
                self.audit_failed_login(&audit_account, known, client, why)
                    .await?;
                return Err(refused);
            }
        };
        let session = Session {
            family_id: &family_id,
            client_id: client_id.as_str(),
        };
        Ok(self.grant(&user, asked.as_ref(), &granted, refresh_token, session)?)
    }

    /// The password check a login runs on a hashing thread: against the user's hash, or a
    /// dummy one for an unknown user, and a new hash when the stored one has outdated
    /// parameters and matched. A check against an older (cheaper) hash is padded, on the
    /// hashing thread, to about what a current check takes: how long an answer took must
    /// not tell which accounts have old hashes, that is, which exist, and such a check
    /// holds a hashing thread as long as any other. (A hash made with costlier parameters
    /// than today's cannot be padded down: lower the parameters only with that in mind.)
    fn password_check(
        &self,
        user: Option<UserRow>,
        password: String,
    ) -> impl FnOnce() -> (Option<UserRow>, Option<String>) + Send + 'static {
        let (hasher, dummy_hash) = (self.hasher.clone(), Arc::clone(&self.dummy_hash));
        let check_times = Arc::clone(&self.check_times);
        move || {
            let stored = user
                .as_ref()
                .map_or(&*dummy_hash, |u| u.hashed_password.as_str());
            let outdated = hasher.needs_rehash(stored);
            let (matched, took) = hasher.verify_timed(&password, stored);
            let pad = if outdated {
                // With nothing to compare with yet, time a current check now.
                let typical = check_times
                    .median()
                    .or_else(|| {
                        let (_, took) = hasher.verify_timed(&password, &dummy_hash);
                        took.inspect(|&took| check_times.record(took))
                    })
                    .unwrap_or_default();
                // Within 5% either way, as a real check's time varies too.
                let spread = u64::try_from(typical.as_micros() / 10).unwrap_or(u64::MAX);
                let jitter = Duration::from_micros(
                    u64::from(u32::from_le_bytes(random_bytes())) % (spread + 1),
                );
                (typical + jitter)
                    .saturating_sub(Duration::from_micros(spread / 2))
                    .saturating_sub(took.unwrap_or_default())
            } else {
                // Unusable hashes are not timed: their zero would pull the median down.
                if let Some(took) = took {
                    check_times.record(took);
                }
                Duration::ZERO
            };
            std::thread::sleep(pad);
            if !matched {
                return (None, None);
            }
            let upgraded_hash = outdated.then(|| hasher.hash(&password).ok()).flatten();
            (user, upgraded_hash)
        }
    }

    /// Gives back a reservation whose password check failed through no doing of the
    /// client (the hashing or the database): the attempt does not count. A refund that
    /// fails leaves it counted, and is logged.
    async fn cancel_reservation(&self, reservation: Reservation) {
        let cancelled = self
            .budget_step(move |budget| Ok(budget.release(&reservation, None)?))
            .await;
        if let Err(cancel_error) = cancelled {
            log::warn!("login budget: a cancelled attempt stays counted: {cancel_error}");
        }
    }

    /// Runs one step against the login budget: in place for an in-process store, on a
    /// blocking thread for one that waits on the database.
    async fn budget_step<T: Send + 'static>(
        &self,
        step: impl FnOnce(&dyn LoginBudget) -> Result<T, BudgetError> + Send + 'static,
    ) -> Result<T, BudgetError> {
        if !self.budget.blocks() {
            return step(&*self.budget);
        }
        let budget = Arc::clone(&self.budget);
        blocking(move || Ok(step(&*budget))).await?
    }

    /// The refresh grant (RFC 6749 §6): a new access token and a new refresh token for a
    /// current one, which is used up.
    ///
    /// Everything that can refuse (the family's stamp and lifetime, the scopes asked for
    /// against the role now) is decided in the transaction that uses the token, so a
    /// refusal or a failure leaves the token current. A used token presented again less
    /// than `refresh_reuse_grace_secs` after its rotation, while the refresh token it got
    /// is still unused, gets that same refresh token again (a double submit). Otherwise it
    /// is reuse, and revokes its whole family (RFC 9700 §4.14.2).
    pub async fn refresh(
        &self,
        refresh_token: String,
        scope: Option<String>,
        client_id: Option<String>,
        client: IpAddr,
    ) -> Result<TokenResponse, LoginError> {
        // A client_id, when sent, must be the login's (RFC 6749 §6), and the login's client
        // must still be allowed.
        let named_client = client_id
            .filter(|given| !given.is_empty())
            .map(|given| self.clients.resolve(Some(&given)))
            .transpose()
            .map_err(LoginError::from)?;
        let asked = scope
            .as_deref()
            .map(Scopes::parse_request)
            .transpose()
            .map_err(LoginError::InvalidScope)?
            .flatten();
        let address = client;
        let client = self.budget_keys.network(client);
        self.budget_step(move |budget| budget.check_client(&client))
            .await?;
        let now = unix_now();
        let next_token = random_secret();
        let next = Successor {
            hash: hash_secret(&next_token),
            sealed: seal_successor(&refresh_token, &next_token).ok_or_else(|| {
                ServiceError::internal("sealing a refresh token failed", "encryption error")
            })?,
            now,
            lifetime_secs: self.refresh_lifetime_secs,
            session_max_secs: self.session_max_secs,
            grace_secs: self.reuse_grace_secs,
        };
        let (sessions, presented, decide_asked, clients) = (
            self.sessions.clone(),
            hash_secret(&refresh_token),
            asked.clone(),
            self.clients.clone(),
        );
        let rotation = blocking(move || {
            Ok(sessions.rotate(&presented, &next, |user, family| {
                let Some(family_client) =
                    clients.for_refresh(&family.client_id, named_client.as_ref())
                else {
                    return Err(LoginError::InvalidRefreshToken);
                };
                let within = family_scopes(family);
                if let (Some(asked), Some(within)) = (&decide_asked, &within)
                    && !asked.is_subset(within)
                {
                    return Err(LoginError::InvalidScope(
                        "a refresh may only narrow the scopes of the login".into(),
                    ));
                }
                let scopes = grant_scopes(user, decide_asked.as_ref(), within.as_ref())?;
                Ok((scopes, family.family_id.clone(), family_client))
            }))
        })
        .await??;
        match rotation {
            Rotation::Rotated {
                user,
                decided: (scopes, family_id, client_id),
            } => {
                self.hooks.reach(Point::RefreshRotated);
                let session = Session {
                    family_id: &family_id,
                    client_id: client_id.as_str(),
                };
                Ok(self.grant(&user, asked.as_ref(), &scopes, next_token, session)?)
            }
            Rotation::Repeated {
                user,
                decided: (scopes, family_id, client_id),
                successor_hash,
                successor_sealed,
            } => {
                let successor = open_successor(&refresh_token, &successor_hash, &successor_sealed)
                    .ok_or(LoginError::InvalidRefreshToken)?;
                let session = Session {
                    family_id: &family_id,
                    client_id: client_id.as_str(),
                };
                Ok(self.grant(&user, asked.as_ref(), &scopes, successor, session)?)
            }
            Rotation::Reused { family_id, user_id } => {
                log::warn!("refresh token reused: family {family_id} of user {user_id} revoked");
                let sessions = self.sessions.clone();
                let reuse = AuditEntry::new(AuditEvent::RefreshReuseDetected, Actor::Anonymous)
                    .user_id(user_id)
                    .client(address);
                let revoked = family_id.clone();
                blocking(move || sessions.revoke_family(&revoked, now, &reuse)).await?;
                self.forget_session(user_id, &family_id);
                self.count_client_failure(client).await?;
                Err(LoginError::InvalidRefreshToken)
            }
            Rotation::Refused => {
                self.count_client_failure(client).await?;
                Err(LoginError::InvalidRefreshToken)
            }
        }
    }

    /// RFC 7009 revocation: a refresh token revokes its family; an unknown or already
    /// revoked token is fine (the RFC says so); an access token is not revocable alone.
    pub async fn revoke(&self, token: String, client: IpAddr) -> Result<(), LoginError> {
        let address = client;
        let client = self.budget_keys.network(client);
        self.budget_step(move |budget| budget.check_client(&client))
            .await?;
        if jsonwebtoken::decode_header(&token).is_ok() {
            return Err(LoginError::UnsupportedTokenType);
        }
        let sessions = self.sessions.clone();
        let presented = hash_secret(&token);
        let revoked = blocking(move || match sessions.family_of(&presented)? {
            Some((family_id, user_id)) => {
                let audit = AuditEntry::new(AuditEvent::TokenRevoked, Actor::User(user_id))
                    .user_id(user_id)
                    .client(address);
                let revoked = sessions.revoke_family(&family_id, unix_now(), &audit)?;
                Ok(revoked.then_some((user_id, family_id)))
            }
            None => Ok(None),
        })
        .await?;
        if let Some((user_id, family_id)) = &revoked {
            self.forget_session(*user_id, family_id);
        }
        // An unknown token, or one whose family was revoked already, costs the client: no
        // endless revocations of one old token, each a write.
        if revoked.is_none() {
            self.count_client_failure(client).await?;
        }
        Ok(())
    }

    /// The network `client` counts as in the login budget (`auth.ipv4_prefix_len`,
    /// `auth.ipv6_prefix_len`).
    pub fn client_network(&self, client: IpAddr) -> IpNet {
        self.budget_keys.network(client)
    }

    async fn count_client_failure(&self, client: IpNet) -> Result<(), BudgetError> {
        self.budget_step(move |budget| Ok(budget.count_client_failure(&client)?))
            .await
    }

    /// Ends every session of the user (blocking): revokes their refresh-token families and
    /// gives them a new security stamp, which ends their access tokens and any login or
    /// refresh still in flight.
    pub fn revoke_sessions(&self, email: &str) -> Result<String, ServiceError> {
        let email = normalise_email(email);
        let audit = AuditEntry::new(AuditEvent::SessionsRevoked, Actor::Cli).email(&email);
        if self
            .sessions
            .revoke_user(&email, &random_id(), unix_now(), &audit)?
        {
            Ok(email)
        } else {
            Err(no_such_user(&email))
        }
    }

    /// Deletes the families that can no longer refresh: every token expired, or revoked
    /// (blocking). Returns how many went.
    pub fn purge_sessions(&self) -> Result<usize, ServiceError> {
        self.sessions.purge(unix_now(), self.reuse_grace_secs)
    }

    /// A new family with its first refresh token, bound to the user's security stamp: the
    /// token in the clear (only its hash is stored) and the rows to insert.
    fn new_session(
        &self,
        user: &UserRow,
        granted: &Scopes,
        client_id: &ClientId,
    ) -> (String, (RefreshFamilyRow, RefreshTokenRow)) {
        let (token, now) = (random_secret(), unix_now());
        let family = RefreshFamilyRow {
            family_id: random_id(),
            user_id: user.user_id,
            scope: granted.to_string(),
            created_at: now,
            revoked_at: None,
            security_stamp: user.security_stamp.clone(),
            client_id: client_id.as_str().to_owned(),
        };
        let first = RefreshTokenRow {
            token_hash: hash_secret(&token),
            family_id: family.family_id.clone(),
            created_at: now,
            expires_at: now + self.refresh_lifetime_secs,
            used_at: None,
            successor_hash: None,
            successor_sealed: None,
        };
        (token, (family, first))
    }

    fn grant(
        &self,
        user: &UserRow,
        asked: Option<&Scopes>,
        granted: &Scopes,
        refresh_token: String,
        session: Session<'_>,
    ) -> Result<TokenResponse, ServiceError> {
        let scope = granted.to_string();
        let access_token = self.signer.issue(
            user.user_id,
            &user.name,
            &user.email,
            &user.security_stamp,
            &scope,
            session,
        )?;
        Ok(TokenResponse {
            access_token,
            token_type: "bearer".into(),
            expires_in: self.signer.lifetime_secs(),
            scope: (asked != Some(granted)).then_some(scope),
            refresh_token: Some(refresh_token),
        })
    }

    /// The user of a bearer token: its signature and claims, then whether the user still
    /// exists with the token's security stamp and the token's session (refresh-token
    /// family) is not revoked, from a cache refreshed every `revocation_cache_ms`.
    pub async fn authenticate(&self, token: &str) -> Result<AuthenticatedUser, ServiceError> {
        let claims = self.signer.verify_memoised(token)?;
        let key: SessionKey = (claims.user_id()?, claims.sid.as_deref().map(Box::from));
        if let Some(cached) = self.cached_session(&key) {
            return accept(&claims, cached.holder.as_deref());
        }
        let holder = self
            .session_holder(key.0, key.1.clone())
            .await?
            .map(Arc::new);
        let result = accept(&claims, holder.as_deref());
        let now = Instant::now();
        let ttl = self.revocation_ttl;
        self.revocation_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key,
                CachedSession {
                    checked_at: now,
                    holder,
                },
                now,
                |cached| {
                    if now.saturating_duration_since(cached.checked_at) >= ttl {
                        Retention::Expired
                    } else {
                        Retention::Normal
                    }
                },
            );
        result
    }

    /// RFC 7662 introspection of an access or a refresh token, read from the database now
    /// rather than the bearer check's cache, so that a revocation shows at once.
    pub async fn introspect(&self, token: String) -> Result<IntrospectionResponse, ServiceError> {
        let inactive = IntrospectionResponse::default();
        if jsonwebtoken::decode_header(&token).is_ok() {
            let Ok(claims) = self.signer.verify(&token) else {
                return Ok(inactive);
            };
            let holder = self
                .session_holder(claims.user_id()?, claims.sid.as_deref().map(Box::from))
                .await?;
            let Ok(user) = accept(&claims, holder.as_ref()) else {
                return Ok(inactive);
            };
            return Ok(IntrospectionResponse {
                active: true,
                scope: Some(user.scopes.to_string()),
                client_id: claims.client_id,
                username: Some(user.user.email),
                token_type: Some("Bearer".into()),
                exp: i64::try_from(claims.exp).ok(),
                iat: i64::try_from(claims.iat).ok(),
                sub: Some(claims.sub),
                aud: Some(claims.aud),
                iss: Some(claims.iss),
                jti: Some(claims.jti),
                sid: claims.sid,
            });
        }
        let (sessions, presented) = (self.sessions.clone(), hash_secret(&token));
        let Some((token, family, user)) =
            blocking(move || sessions.refresh_token(&presented)).await?
        else {
            return Ok(inactive);
        };
        let now = unix_now();
        let active = token.used_at.is_none()
            && token.expires_at > now
            && is_live(&family, &user, now.saturating_sub(self.session_max_secs));
        let client_id = self.clients.for_refresh(&family.client_id, None);
        let (true, Some(client_id)) = (active, client_id) else {
            return Ok(inactive);
        };
        let role = role_of(&user);
        let scopes = family_scopes(&family).map_or_else(|| role.scopes(), |s| s.allowed_for(role));
        Ok(IntrospectionResponse {
            active: true,
            scope: Some(scopes.to_string()),
            client_id: Some(client_id.as_str().to_owned()),
            username: Some(user.email),
            token_type: Some("refresh_token".into()),
            exp: Some(token.expires_at),
            iat: Some(token.created_at),
            sub: Some(user.user_id.to_string()),
            iss: Some(self.issuer().to_owned()),
            sid: Some(family.family_id),
            ..inactive
        })
    }

    /// The user `user_id` and whether the session `family_id` is live, from the database
    /// (no cache).
    async fn session_holder(
        &self,
        user_id: i32,
        family_id: Option<Box<str>>,
    ) -> Result<Option<SessionHolder>, ServiceError> {
        let sessions = self.sessions.clone();
        let found =
            blocking(move || sessions.session_holder(user_id, family_id.as_deref())).await?;
        Ok(found.map(|(row, session_live)| SessionHolder {
            stamp: row.security_stamp.clone(),
            role: role_of(&row),
            user: to_schema(&row),
            session_live,
        }))
    }

    fn cached_session(&self, key: &SessionKey) -> Option<CachedSession> {
        let cache = self
            .revocation_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache
            .get(key)
            .filter(|cached| cached.checked_at.elapsed() < self.revocation_ttl)
            .cloned()
    }

    /// Drops what the bearer check remembers of a session this instance just revoked, so
    /// that here its access tokens are refused at once rather than within the window.
    fn forget_session(&self, user_id: i32, family_id: &str) {
        self.revocation_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(user_id, Some(Box::from(family_id))));
    }
}

/// A verified token's user, if `holder` (its user and session as last read) still
/// accepts it.
fn accept(
    claims: &Claims,
    holder: Option<&SessionHolder>,
) -> Result<AuthenticatedUser, ServiceError> {
    match holder {
        Some(holder) if holder.stamp != claims.stm => {
            Err(ServiceError::InvalidToken("token revoked"))
        }
        Some(holder) if !holder.session_live => Err(ServiceError::InvalidToken("session ended")),
        Some(holder) => Ok(AuthenticatedUser {
            user: holder.user.clone(),
            scopes: claims
                .scope
                .as_deref()
                .map_or_else(|| holder.role.scopes(), Scopes::from_claim)
                .allowed_for(holder.role),
            client_id: claims.client_id.clone(),
        }),
        None => Err(ServiceError::InvalidToken("token revoked")),
    }
}

fn secs(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// The key of [`AuthService::username_digest`]: derived from the signing key, or random
/// for a process that signs with a random key.
fn audit_digest_key(settings: &Settings) -> [u8; 64] {
    let mut key = [0u8; 64];
    let derived = settings
        .token_key
        .as_ref()
        .and_then(|keys| keys.signing().1.secret_bytes())
        .is_some_and(|secret| {
            hkdf::Hkdf::<sha2::Sha256>::new(None, secret)
                .expand(b"myapi audit username digest", &mut key)
                .is_ok()
        });
    if derived { key } else { random_bytes() }
}

/// The scopes a family was granted; `None` for a family from before scopes were stored
/// (an empty string), which gets what the role allows. A family whose every scope has
/// since been removed from the list is `Some` of nothing, and refreshes to nothing.
fn family_scopes(family: &RefreshFamilyRow) -> Option<Scopes> {
    (!family.scope.is_empty()).then(|| Scopes::from_claim(&family.scope))
}

fn no_such_user(email: &str) -> ServiceError {
    ServiceError::NotFound(format!("no user with email {email}"))
}

fn to_schema(row: &UserRow) -> UserSchema {
    UserSchema {
        user_id: row.user_id,
        name: row.name.clone(),
        email: row.email.clone(),
        role: row.role.clone(),
        email_verified: row.email_verified,
    }
}

/// The stored role; the database's CHECK admits only known ones, and anything else grants
/// a reader's rights rather than failing every request of the user.
fn role_of(row: &UserRow) -> Role {
    row.role.parse().unwrap_or(Role::Reader)
}

/// What a token request is granted: what was asked (or, when nothing was, everything the
/// `within` family had, or else the role allows), narrowed to what the role allows now.
/// A refresh has checked that `asked` lies within its family's scope.
fn grant_scopes(
    user: &UserRow,
    asked: Option<&Scopes>,
    within: Option<&Scopes>,
) -> Result<Scopes, LoginError> {
    let role = role_of(user);
    let granted = asked
        .or(within)
        .map_or_else(|| role.scopes(), |scopes| scopes.allowed_for(role));
    if granted.is_empty() {
        return Err(LoginError::InvalidScope(format!(
            "the `{role}` role allows none of the scopes asked for"
        )));
    }
    Ok(granted)
}

/// One page of users, and where the next one starts (if there is one).
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<UserSchema>,
    pub next: Option<Page>,
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

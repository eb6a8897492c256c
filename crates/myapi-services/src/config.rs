//! Settings, layered with the `config` crate, later wins:
//! `config/default.toml` as compiled in → the same file on disk, if present →
//! `config/$MYAPI_ENV.toml` → `.env` in the working directory → environment.
//!
//! `config/default.toml` is the one place a default is written: no Rust restates one, and a
//! field missing from every layer is a start-up error. Each tier deserialises only its own
//! sections from a [`SettingsSource`]: the services read `database`, `auth`, `movies`, `cache`,
//! `users`, `audit`, `idempotency`, `limits`, `token_key` or `token_keys`, and
//! `token_key_files` ([`Settings`]);
//! the web tier reads `server`, `log` and `metrics`.
//!
//! Environment variables are `MYAPI_` followed by the key path joined with `__`:
//! `MYAPI_DATABASE__DSN`, `MYAPI_SERVER__PORT`, `MYAPI_TOKEN_KEY`, `MYAPI_TOKEN_KEYS`,
//! `MYAPI_TOKEN_KEY_FILES`.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use lettre::message::Mailbox;
use myapi_models::one_line;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::auth::keys::TokenKeys;
use crate::secrets::Secret;
use crate::{Database, ServiceError};

const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// What the services tier is configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: DatabaseSettings,
    /// The token keys, from `MYAPI_TOKEN_KEY` (one key) or `MYAPI_TOKEN_KEYS` (a `kid:key`
    /// list) and `MYAPI_TOKEN_KEY_FILES` (Ed25519 PEM files); `None` when none is set, and
    /// then a random key is generated per process.
    #[serde(flatten, deserialize_with = "TokenKeys::from_settings")]
    pub token_key: Option<TokenKeys>,
    pub auth: AuthSettings,
    pub movies: MoviesSettings,
    pub cache: CacheSettings,
    pub users: UsersSettings,
    pub audit: AuditSettings,
    pub idempotency: IdempotencySettings,
    pub limits: LimitSettings,
    pub mail: MailSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `postgres://…`, `sqlite://PATH` or a file path; empty means `myapi.db`.
    pub dsn: Secret,
    pub pool_size: NonZeroU32,
    /// How long a request waits for a pooled connection, and libpq for a connect.
    pub connect_timeout_secs: NonZeroU64,
    /// PostgreSQL `statement_timeout`; 0 disables it.
    pub statement_timeout_ms: u64,
    /// Apply pending migrations when the server starts.
    pub run_migrations: bool,
}

impl DatabaseSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.get())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// This API's public base URL: tokens' `iss` (set on issue, required on verify) and the
    /// RFC 8414 issuer. An absolute `https` URL (`http` on loopback) without query or
    /// fragment, unless it came from `token_issuer`.
    pub issuer: String,
    /// The older name of `issuer`, still read so that existing configurations keep their
    /// `iss`: when set, it is the issuer, as it is (it predates the URL rule).
    #[serde(default)]
    pub token_issuer: Option<String>,
    /// The OAuth clients `/token` issues to (`client_id`); empty: any well-formed id.
    #[serde(deserialize_with = "comma_list")]
    pub client_ids: Vec<String>,
    /// The `client_id` of a token request that names none.
    pub default_client_id: String,
    /// JWT `aud`: a token signed with a shared key for another deployment is refused.
    pub token_audience: String,
    pub token_lifetime_minutes: NonZeroU64,
    /// How long a refresh token lives; each refresh issues a new one.
    pub refresh_token_lifetime_days: NonZeroU64,
    /// How long a login's session (its refresh-token family) can be kept alive by
    /// refreshing; then the user logs in again. At least `refresh_token_lifetime_days`.
    pub session_max_days: NonZeroU64,
    /// A used refresh token presented again within this many seconds of its rotation is
    /// refused without revoking its family: two tabs refreshing at once must not log the
    /// user out. Later, it is taken for theft and revokes the family.
    pub refresh_reuse_grace_secs: u64,
    /// Argon2id memory cost in KiB; `argon2::Params` checks all three (OWASP minimum:
    /// 19456 KiB, 2 iterations, 1 lane).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub password_min_chars: NonZeroUsize,
    /// Bounds the hashing work one request can ask for.
    pub password_max_chars: usize,
    pub hash_concurrency: Threads,
    /// Logins allowed to wait for a hashing thread; past it `/token` answers 503.
    pub hash_queue: usize,
    /// Failed logins one client IP may make before it is throttled.
    pub ip_failure_burst: NonZeroU32,
    /// After this many seconds one failure of a client IP is forgotten.
    pub ip_failure_refill_secs: u64,
    pub account_failure_burst: NonZeroU32,
    pub account_failure_refill_secs: u64,
    /// Client addresses count against the throttle by network, IPv4 by this prefix ...
    pub ipv4_prefix_len: u8,
    /// ... and IPv6 by this one.
    pub ipv6_prefix_len: u8,
    /// How long a token's revocation check is cached, so deletions and password changes
    /// take effect within this time.
    pub revocation_cache_ms: u64,
    /// Where the login budgets live: shared by every instance in PostgreSQL, or in this
    /// process.
    pub login_budget: StateStore,
    /// Whether `POST /users/` signs people up.
    pub registration: Registration,
    /// How long a sign-up's verification link works.
    pub verification_ttl_hours: NonZeroU32,
    /// Sign-ups one client network may make at once (its own bucket, not the login
    /// budget's), and the seconds after which one is forgotten.
    pub signup_ip_burst: NonZeroU32,
    pub signup_ip_refill_secs: u64,
    /// Sign-ups for one address at once, and the seconds after which one is forgotten.
    pub signup_account_burst: NonZeroU32,
    pub signup_account_refill_secs: u64,
    /// Whether `POST /password-reset` mails reset links.
    pub password_reset: PasswordReset,
    /// How long a reset link works.
    pub reset_ttl_minutes: NonZeroU32,
    /// Reset requests one client network may make at once (its own bucket), and the
    /// seconds after which one is forgotten.
    pub reset_ip_burst: NonZeroU32,
    pub reset_ip_refill_secs: u64,
    /// Reset requests for one address at once, and the seconds after which one is
    /// forgotten.
    pub reset_account_burst: NonZeroU32,
    pub reset_account_refill_secs: u64,
}

/// `auth.password_reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordReset {
    /// `POST /password-reset` and its confirmation answer 403.
    Off,
    On,
}

/// `auth.registration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Operators create every account (`myapi-cli create-user`); `POST /users/` is 403.
    Closed,
    /// Anyone may sign up for an unverified reader account.
    Open,
}

impl AuthSettings {
    /// Makes `token_issuer`, when set, the issuer. `issuer` set as well, to another value
    /// than the compiled-in default, is a conflict: which one tokens should carry is unknown.
    fn adopt_token_issuer(&mut self, default_issuer: &str) -> Result<(), ConfigError> {
        if self.token_issuer.as_deref() == Some("") {
            self.token_issuer = None;
        }
        let Some(alias) = &self.token_issuer else {
            return Ok(());
        };
        if self.issuer != *alias && self.issuer != default_issuer {
            return Err(ConfigError::Invalid {
                key: "auth.token_issuer",
                message: "is the older name of auth.issuer; both are set, to different \
                          values: keep auth.issuer"
                    .into(),
            });
        }
        self.issuer.clone_from(alias);
        Ok(())
    }

    /// Why `issuer` is not an RFC 8414 issuer, if it is not.
    fn issuer_problem(&self) -> Option<&'static str> {
        // The URL parser drops blanks and line breaks; tokens would carry them.
        if self
            .issuer
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Some("must not contain spaces or control characters");
        }
        let Ok(url) = url::Url::parse(&self.issuer) else {
            return Some("must be an absolute URL, such as https://api.example.com");
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Some("must not carry a user name or password: it is public");
        }
        let loopback = match url.host() {
            Some(url::Host::Domain(name)) => name == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Some("must be an https URL (http only on loopback)"),
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Some("must have no query or fragment (RFC 8414 §2)");
        }
        None
    }
}

/// `auth.login_budget` and `limits.store`: where state every instance should share lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateStore {
    /// The database on PostgreSQL, memory on SQLite.
    Auto,
    /// In this process: each instance has budgets of its own.
    Memory,
    /// In PostgreSQL, shared by every instance on the database.
    Database,
}

impl StateStore {
    /// Whether the state goes to the database, on this one; `key` names the setting in
    /// the error when it asks for a database that cannot hold it.
    pub fn is_shared(self, db: &Database, key: &'static str) -> Result<bool, ServiceError> {
        match (self, db.backend_name()) {
            (Self::Memory, _) => Ok(false),
            (Self::Auto, backend) => Ok(backend == "postgres"),
            (Self::Database, "postgres") => Ok(true),
            (Self::Database, _) => Err(ServiceError::invalid(
                key,
                "\"database\" needs PostgreSQL; on SQLite use \"memory\" or \"auto\"",
            )),
        }
    }
}

/// Longest password any policy may allow: argon2 hashes what it is given, so this bounds the
/// work one request can cause.
const MAX_PASSWORD_CHARS: usize = 4096;

impl AuthSettings {
    /// The argon2 parameters, as argon2 itself accepts them.
    pub fn argon2_params(&self) -> Result<argon2::Params, ConfigError> {
        argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .map_err(|error| ConfigError::Invalid {
            key: "auth.argon2_*",
            message: error.to_string(),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct MoviesSettings {
    /// Page size when `limit` is not given.
    pub default_page_size: u32,
    /// Largest accepted `limit`.
    pub max_page_size: NonZeroU32,
    /// Largest accepted `offset`: the database reads and drops every skipped row, so a deep
    /// offset costs its depth. Past it, clients page with the `after` cursor.
    pub max_offset: u32,
}

/// The movies' read cache (`movies::cache`).
#[derive(Debug, Clone, Deserialize)]
pub struct CacheSettings {
    pub enabled: bool,
    /// What the entries may hold in all, bodies and bookkeeping; the least recently used
    /// go first.
    pub max_bytes: NonZeroUsize,
    /// How far behind a committed write an entry may be served, on PostgreSQL; past it
    /// without word from the database, reads bypass the cache.
    pub max_staleness_ms: NonZeroU64,
}

/// Paging of `GET /users/`.
#[derive(Debug, Clone, Deserialize)]
pub struct UsersSettings {
    pub default_page_size: u32,
    pub max_page_size: NonZeroU32,
}

/// The audit trail: how long it is kept and how `GET /audit/` pages it.
#[derive(Debug, Clone, Deserialize)]
pub struct AuditSettings {
    /// `myapi-cli purge-audit` deletes events older than this many days; 0 keeps them all.
    pub retention_days: u32,
    pub default_page_size: u32,
    pub max_page_size: NonZeroU32,
}

/// Requests sent with an `Idempotency-Key` (README: Idempotency keys).
#[derive(Debug, Clone, Deserialize)]
pub struct IdempotencySettings {
    /// A stored answer is replayed this long; after it the key is free again, and
    /// `myapi-cli purge-idempotency-keys` deletes it.
    pub retention_hours: NonZeroU32,
}

/// The `mail` section (README: Accounts).
#[derive(Debug, Clone, Deserialize)]
pub struct MailSettings {
    pub transport: MailTransport,
    /// Where `transport = "smtp"` sends; empty when it is not used.
    #[serde(deserialize_with = "optional_smtp_url")]
    pub smtp_url: Option<SmtpUrl>,
    /// The `From` of every mail, such as `myapi <no-reply@example.com>`; its domain also
    /// ends every `Message-ID`.
    #[serde(deserialize_with = "parsed")]
    pub from: Mailbox,
    /// Where the links in mails lead: a page that posts the token it carries to the API.
    pub link_base_url: String,
    /// Attempts at one mail before it is given up, with the reason logged.
    pub max_attempts: NonZeroU32,
    /// How long a sender holds the mails it claimed; past it, another sender (or this one
    /// after a restart) takes them. Longer than an SMTP exchange takes (15 s per step).
    pub lease_secs: NonZeroU32,
    /// Lets `transport = "log"` run with open registration or password reset, which writes
    /// live single-use tokens to the log: for development only.
    pub log_links: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// Each mail, link included, goes to the log at info level: the quick start needs no
    /// mail server.
    Log,
    Smtp,
}

/// `mail.smtp_url`: `smtp://[user:password@]host[:port]` (port 587; STARTTLS required, unless
/// the host is loopback, where the connection may stay plain) or `smtps://…` (port 465, TLS
/// from the start). `Debug` leaves the password out.
#[derive(Clone)]
pub struct SmtpUrl {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) security: SmtpSecurity,
    pub(crate) credentials: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SmtpSecurity {
    ImplicitTls,
    StartTls,
    /// Loopback only: a relay on the same machine.
    Plain,
}

impl FromStr for SmtpUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or("names no host")?
            .trim_matches(['[', ']'])
            .to_owned();
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let (security, default_port) = match url.scheme() {
            "smtps" => (SmtpSecurity::ImplicitTls, 465),
            "smtp" if loopback => (SmtpSecurity::Plain, 587),
            "smtp" => (SmtpSecurity::StartTls, 587),
            other => return Err(format!("scheme `{other}` is not smtp or smtps")),
        };
        if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
            return Err("takes no path, query or fragment".into());
        }
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| "its user or password is not UTF-8".to_owned())
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, password) => Some((decode(user)?, decode(password.unwrap_or(""))?)),
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(default_port),
            security,
            credentials,
        })
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

fn optional_smtp_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SmtpUrl>, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.trim().is_empty() {
        return Ok(None);
    }
    raw.parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("mail.smtp_url {e}")))
}

fn parsed<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    String::deserialize(d)?
        .parse()
        .map_err(|e| serde::de::Error::custom(format!("not an address: {e}")))
}

/// The `limits` section: request limits per caller on every route outside login (README:
/// Rate limits).
#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    pub enabled: bool,
    /// Where the buckets live: shared by every instance in PostgreSQL, or in this process.
    pub store: StateStore,
    pub read: ClassLimit,
    pub write: ClassLimit,
}

/// One class's limit: `burst` requests at once, `per_second` more each second.
#[derive(Debug, Clone, Deserialize)]
pub struct ClassLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// A thread count read as a number where 0 means one per core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "usize")]
pub struct Threads(NonZeroUsize);

impl Threads {
    pub fn get(self) -> usize {
        self.0.get()
    }
}

impl From<usize> for Threads {
    fn from(count: usize) -> Self {
        Self(
            NonZeroUsize::new(count).unwrap_or_else(|| {
                std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
            }),
        )
    }
}

/// Settings could not be loaded; `Display` is one line naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(".env: {0}")]
    DotEnv(#[source] dotenvy::Error),
    #[error("{}", one_line(&.0.to_string()))]
    Load(#[source] config::ConfigError),
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The layered configuration, from which each tier takes its own sections.
#[derive(Debug, Clone)]
pub struct SettingsSource {
    config: config::Config,
    exposed_dotenv: Option<ExposedFile>,
}

/// The `.env` file [`SettingsSource::load`] reads, in the working directory only.
const DOTENV: &str = ".env";

impl SettingsSource {
    /// Every layer: the compiled-in defaults, `$MYAPI_CONFIG_DIR` (default `./config`),
    /// `./.env` and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        match dotenvy::from_path(DOTENV) {
            Err(error) if !error.not_found() => return Err(ConfigError::DotEnv(error)),
            _ => {}
        }
        let dir = std::env::var_os("MYAPI_CONFIG_DIR")
            .map_or_else(|| PathBuf::from("config"), PathBuf::from);
        let mut source = Self::load_from(&dir)?;
        source.exposed_dotenv = ExposedFile::check(Path::new(DOTENV));
        Ok(source)
    }

    /// The `.env` that [`Self::load`] read, when its group or others may read it too. It is
    /// told here rather than logged, because settings are read before logging is set up.
    pub fn exposed_dotenv(&self) -> Option<&ExposedFile> {
        self.exposed_dotenv.as_ref()
    }

    /// The compiled-in defaults, files in `dir` and the environment (no `.env`).
    pub fn load_from(dir: &Path) -> Result<Self, ConfigError> {
        let mut builder = Self::defaults_builder()
            .add_source(config::File::from(dir.join("default.toml")).required(false));
        if let Ok(env) = std::env::var("MYAPI_ENV")
            && !env.is_empty()
        {
            builder = builder
                .add_source(config::File::from(dir.join(format!("{env}.toml"))).required(false));
        }
        let environment = config::Environment::with_prefix("MYAPI")
            .prefix_separator("_")
            .separator("__");
        Ok(Self::from(builder.add_source(environment).build()?))
    }

    /// The compiled-in defaults alone, untouched by files or the environment (tests, tools).
    pub fn defaults() -> Result<Self, ConfigError> {
        Ok(Self::from(Self::defaults_builder().build()?))
    }

    fn defaults_builder() -> config::ConfigBuilder<config::builder::DefaultState> {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
    }

    /// The sections `T` has fields for (the rest are ignored). Errors name the full key,
    /// e.g. `server.port`.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        Ok(self.config.clone().try_deserialize()?)
    }

    /// The services' sections, checked.
    pub fn services(&self) -> Result<Settings, ConfigError> {
        let mut settings: Settings = self.read()?;
        let default_issuer = Self::defaults_builder()
            .build()?
            .get_string("auth.issuer")?;
        settings.auth.adopt_token_issuer(&default_issuer)?;
        settings.validate()?;
        Ok(settings)
    }
}

impl From<config::Config> for SettingsSource {
    fn from(config: config::Config) -> Self {
        Self {
            config,
            exposed_dotenv: None,
        }
    }
}

/// A settings file that others than its owner may read: it may hold the DSN's password or
/// the token key. `Display` is the warning, naming the file and its mode, never its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposedFile {
    pub path: PathBuf,
    /// The permission bits (`0o644`).
    pub mode: u32,
}

impl ExposedFile {
    /// `path`, when it exists and its group or others may read it. Symbolic links are
    /// followed, as reading the file does. Off Unix there are no such bits: never.
    pub fn check(path: &Path) -> Option<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
            (mode & 0o044 != 0).then(|| Self {
                path: path.to_owned(),
                mode,
            })
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }
}

impl fmt::Display for ExposedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        write!(
            f,
            "{path} is readable by its group or others (mode {:04o}) and may hold secrets; \
             `chmod 600 {path}`",
            self.mode
        )
    }
}

impl From<config::ConfigError> for ConfigError {
    fn from(error: config::ConfigError) -> Self {
        Self::Load(error)
    }
}

impl Settings {
    /// Loads every layer (see [`SettingsSource::load`]) and checks the services' sections.
    pub fn load() -> Result<Self, ConfigError> {
        SettingsSource::load()?.services()
    }

    /// The compiled-in defaults (tests, benchmarks).
    pub fn defaults() -> Result<Self, ConfigError> {
        SettingsSource::defaults()?.services()
    }

    /// The rules that span several fields; single values are checked by their types.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        // Which backend the DSN names is a setting's meaning: decided here, so an ambiguous
        // one stops start-up like any bad setting.
        if let Err(error) = myapi_models::DatabaseUrl::parse(self.database.dsn.expose()) {
            return invalid("database.dsn", &error.to_string());
        }
        let auth = &self.auth;
        if auth.token_issuer.is_none()
            && let Some(problem) = auth.issuer_problem()
        {
            return invalid("auth.issuer", problem);
        }
        if let Err((key, message)) =
            crate::auth::credentials::Clients::new(&auth.client_ids, &auth.default_client_id)
        {
            return invalid(key, &message);
        }
        if auth.password_min_chars.get() > auth.password_max_chars
            || auth.password_max_chars > MAX_PASSWORD_CHARS
        {
            return invalid(
                "auth.password_max_chars",
                "must be between auth.password_min_chars and 4096",
            );
        }
        let mails_links =
            auth.registration == Registration::Open || auth.password_reset == PasswordReset::On;
        if mails_links && self.mail.transport == MailTransport::Log && !self.mail.log_links {
            return invalid(
                "mail.transport",
                "is \"log\" with auth.registration = \"open\" or auth.password_reset = \"on\": \
                 the log would hold live links; set mail.transport = \"smtp\", or \
                 mail.log_links = true in development",
            );
        }
        if auth.session_max_days < auth.refresh_token_lifetime_days {
            return invalid(
                "auth.session_max_days",
                "must be at least auth.refresh_token_lifetime_days",
            );
        }
        if auth.ipv4_prefix_len > 32 {
            return invalid("auth.ipv4_prefix_len", "must be at most 32");
        }
        if auth.ipv6_prefix_len > 128 {
            return invalid("auth.ipv6_prefix_len", "must be at most 128");
        }
        if self.movies.default_page_size == 0
            || self.movies.default_page_size > self.movies.max_page_size.get()
        {
            return invalid(
                "movies.default_page_size",
                "must be between 1 and movies.max_page_size",
            );
        }
        if self.users.default_page_size == 0
            || self.users.default_page_size > self.users.max_page_size.get()
        {
            return invalid(
                "users.default_page_size",
                "must be between 1 and users.max_page_size",
            );
        }
        if self.audit.default_page_size == 0
            || self.audit.default_page_size > self.audit.max_page_size.get()
        {
            return invalid(
                "audit.default_page_size",
                "must be between 1 and audit.max_page_size",
            );
        }
        auth.argon2_params().map(drop)
    }
}

/// Deserialises a list given as `["a", "b"]` (TOML) or `"a,b"` (an environment variable).
pub fn comma_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrList {
        One(String),
        Many(Vec<String>),
    }
    Ok(match StringOrList::deserialize(deserializer)? {
        StringOrList::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        StringOrList::Many(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key that passes every check, told apart from others by its first character.
    fn good_key(tag: char) -> String {
        format!("{tag}-0123456789abcdefghijklmnopqrstuv")
    }

    #[test]
    fn open_registration_needs_a_mail_server_or_consent_to_log_links() {
        let mut settings = Settings::defaults().unwrap();
        settings.auth.registration = Registration::Open;
        let refused = settings.validate().unwrap_err().to_string();
        assert!(refused.contains("mail.transport"), "{refused}");
        settings.mail.log_links = true;
        settings.validate().unwrap();
        settings.mail.log_links = false;
        settings.mail.transport = MailTransport::Smtp;
        settings.validate().unwrap();
        settings.mail.transport = MailTransport::Log;
        settings.auth.registration = Registration::Closed;
        settings.validate().unwrap();
        settings.auth.password_reset = PasswordReset::On;
        assert!(
            settings.validate().is_err(),
            "password reset mails links too"
        );
    }

    #[test]
    fn smtp_urls_require_tls_off_loopback() {
        let parsed = |raw: &str| raw.parse::<SmtpUrl>().map(|url| (url.security, url.port));
        assert_eq!(
            parsed("smtp://mail.example.com"),
            Ok((SmtpSecurity::StartTls, 587))
        );
        assert_eq!(
            parsed("smtp://127.0.0.1:2525"),
            Ok((SmtpSecurity::Plain, 2525))
        );
        assert_eq!(parsed("smtp://[::1]"), Ok((SmtpSecurity::Plain, 587)));
        assert_eq!(
            parsed("smtps://mail.example.com"),
            Ok((SmtpSecurity::ImplicitTls, 465))
        );
        for bad in [
            "http://mail.example.com",
            "smtp://",
            "smtp://h/path",
            "smtp://h?tls=none",
        ] {
            assert!(parsed(bad).is_err(), "{bad}");
        }
        let url: SmtpUrl = "smtp://me%40example.com:p%3Ass@mail.example.com"
            .parse()
            .unwrap();
        assert_eq!(
            url.credentials,
            Some(("me@example.com".to_owned(), "p:ss".to_owned()))
        );
        assert!(
            !format!("{url:?}").contains("p:ss"),
            "the password is not shown"
        );
    }

    #[test]
    fn the_compiled_in_defaults_are_complete_and_valid() {
        let settings = Settings::defaults().unwrap();
        assert_eq!(settings.auth.issuer, "http://127.0.0.1:8000");
        assert!(settings.token_key.is_none());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut settings = Settings::defaults().unwrap();
        let keys = format!("old:{},new:{}", good_key('a'), good_key('b'));
        settings.token_key = Some(keys.parse().unwrap());
        settings.database.dsn = Secret::new("postgres://u:pw@h/db");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("0123456789"), "{debug}");
        assert!(!debug.contains("pw@"), "{debug}");
        assert!(
            debug.contains("\"old\"") && debug.contains("\"new\""),
            "{debug}"
        );
    }

    /// The services' settings from the defaults with `overrides` (key path, value) on top.
    fn services_with(overrides: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let builder = overrides.iter().fold(
            SettingsSource::defaults_builder(),
            |builder, (key, value)| builder.set_override(*key, *value).unwrap(),
        );
        SettingsSource::from(builder.build()?).services()
    }

    fn kids(keys: &TokenKeys) -> Vec<&str> {
        keys.iter().map(|(kid, _)| kid).collect()
    }

    #[test]
    fn either_variable_gives_the_key_set_and_neither_gives_none() {
        let key = good_key('k');
        let single = services_with(&[("token_key", &key)]).unwrap();
        assert_eq!(kids(single.token_key.as_ref().unwrap()), ["e2411d63"]);

        let list = format!("new:{},e2411d63:{key}", good_key('n'));
        let listed = services_with(&[("token_keys", &list)]).unwrap();
        assert_eq!(
            kids(listed.token_key.as_ref().unwrap()),
            ["new", "e2411d63"]
        );

        assert!(services_with(&[]).unwrap().token_key.is_none());
    }

    #[test]
    fn both_variables_or_a_bad_entry_stop_with_one_line_naming_the_variable() {
        let key = good_key('k');
        let list = format!("e2411d63:{key}");
        let empty_kid = format!(":{key}");
        let repeated = "k".repeat(40);
        for (overrides, expected) in [
            (
                vec![("token_key", key.as_str()), ("token_keys", list.as_str())],
                "token_keys (MYAPI_TOKEN_KEYS): cannot be combined with token_key \
                 (MYAPI_TOKEN_KEY); set only one (that key's kid is e2411d63)",
            ),
            (
                vec![("token_key", "short")],
                "token_key (MYAPI_TOKEN_KEY): must be at least 32 bytes",
            ),
            (
                vec![("token_key", repeated.as_str())],
                "token_key (MYAPI_TOKEN_KEY): is too predictable: its length times log2 of its \
                 number of distinct bytes must be at least 128; make one with \
                 `head -c 32 /dev/urandom | base64`",
            ),
            (
                vec![("token_key", crate::auth::keys::PLACEHOLDER_TOKEN_KEY)],
                "token_key (MYAPI_TOKEN_KEY): is the placeholder of deploy/myapi.env.example, \
                 which is public; make one with `head -c 32 /dev/urandom | base64`",
            ),
            (
                vec![("token_keys", empty_kid.as_str())],
                "token_keys (MYAPI_TOKEN_KEYS): entry 1 has an empty kid",
            ),
        ] {
            let message = services_with(&overrides).unwrap_err().to_string();
            assert_eq!(message, expected);
        }
    }

    #[test]
    fn the_issuer_is_an_https_url_and_token_issuer_its_older_name() {
        let issuer = |overrides: &[(&str, &str)]| {
            services_with(overrides)
                .map(|settings| settings.auth.issuer)
                .map_err(|e| e.to_string())
        };
        for (overrides, expected) in [
            (vec![], Ok("http://127.0.0.1:8000")),
            (
                vec![("auth.issuer", "https://api.example.com/v1")],
                Ok("https://api.example.com/v1"),
            ),
            (
                vec![("auth.issuer", "http://localhost:8000")],
                Ok("http://localhost:8000"),
            ),
            (
                vec![("auth.issuer", "http://[::1]:8000")],
                Ok("http://[::1]:8000"),
            ),
            // The older name alone, as configurations from before `issuer` set it: taken
            // as it is, URL or not; with `issuer` the same, too.
            (vec![("auth.token_issuer", "myapi-prod")], Ok("myapi-prod")),
            (
                vec![
                    ("auth.token_issuer", "https://a.example"),
                    ("auth.issuer", "https://a.example"),
                ],
                Ok("https://a.example"),
            ),
            (
                vec![
                    ("auth.token_issuer", "https://a.example"),
                    ("auth.issuer", "https://b.example"),
                ],
                Err(
                    "auth.token_issuer: is the older name of auth.issuer; both are set, to \
                     different values: keep auth.issuer",
                ),
            ),
            (
                vec![("auth.issuer", "api.example.com")],
                Err("auth.issuer: must be an absolute URL, such as https://api.example.com"),
            ),
            (
                vec![("auth.issuer", "http://api.example.com")],
                Err("auth.issuer: must be an https URL (http only on loopback)"),
            ),
            (
                vec![("auth.issuer", "https://api.example.com/?tenant=1")],
                Err("auth.issuer: must have no query or fragment (RFC 8414 §2)"),
            ),
            (
                vec![("auth.issuer", "https://api.example.com ")],
                Err("auth.issuer: must not contain spaces or control characters"),
            ),
            (
                vec![("auth.issuer", "https://user:secret@api.example.com")],
                Err("auth.issuer: must not carry a user name or password: it is public"),
            ),
            // An empty older name is no setting at all.
            (vec![("auth.token_issuer", "")], Ok("http://127.0.0.1:8000")),
        ] {
            let expected = expected.map(str::to_owned).map_err(str::to_owned);
            assert_eq!(issuer(&overrides), expected, "{overrides:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_files_sign_and_the_secrets_beside_them_verify() {
        use crate::auth::JwsKey;
        use crate::auth::keys::{generate_ed25519, thumbprint};
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path.display().to_string()
        };
        let signing = generate_ed25519();
        let private = write(
            "a.pem",
            &signing.to_pkcs8_pem(LineEnding::LF).unwrap(),
            0o600,
        );
        let next = generate_ed25519().verifying_key();
        let public = write(
            "b.pem",
            &next.to_public_key_pem(LineEnding::LF).unwrap(),
            0o644,
        );
        let secrets = format!("old:{}", good_key('o'));

        let files = format!("{public}, 2027-01:{private}");
        let settings =
            services_with(&[("token_key_files", &files), ("token_keys", &secrets)]).unwrap();
        let keys = settings.token_key.unwrap();
        assert_eq!(kids(&keys), ["2027-01", &thumbprint(&next), "old"]);
        assert_eq!(
            keys.signing().1,
            &JwsKey::Ed25519(Box::new(signing.clone()))
        );
        assert!(!format!("{keys:?}").contains("0123456789"));

        // Only public key files and secrets: the secret still signs (step 1 of the move).
        let settings =
            services_with(&[("token_key_files", &public), ("token_keys", &secrets)]).unwrap();
        assert_eq!(settings.token_key.unwrap().signing().0, "old");

        let open = write(
            "open.pem",
            &signing.to_pkcs8_pem(LineEnding::LF).unwrap(),
            0o644,
        );
        let shared = format!("old:{private}");
        for (overrides, expected) in [
            (
                vec![("token_key_files", open.as_str())],
                format!(
                    "token_key_files (MYAPI_TOKEN_KEY_FILES): entry 1 ({open}) is a private key \
                     other users can access or its group can change (mode 0644); `chmod 600` it"
                ),
            ),
            (
                vec![
                    ("token_key_files", shared.as_str()),
                    ("token_keys", &secrets),
                ],
                "token_key_files (MYAPI_TOKEN_KEY_FILES): the kid old names both a key file \
                 and a MYAPI_TOKEN_KEY(S) secret"
                    .to_owned(),
            ),
            (
                vec![("token_key_files", public.as_str())],
                "token_key_files (MYAPI_TOKEN_KEY_FILES): lists only public keys: a private \
                 key file or MYAPI_TOKEN_KEY(S) must sign tokens"
                    .to_owned(),
            ),
            (
                vec![("token_key_files", &format!("a:{private},a:{public}"))],
                "token_key_files (MYAPI_TOKEN_KEY_FILES): entry 2 repeats the kid of entry 1"
                    .to_owned(),
            ),
        ] {
            let message = services_with(&overrides).unwrap_err().to_string();
            assert_eq!(message, expected);
        }
        let missing = dir.path().join("missing.pem").display().to_string();
        let message = services_with(&[("token_key_files", &missing)])
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(
                "token_key_files (MYAPI_TOKEN_KEY_FILES): entry 1 cannot be read: No such file"
            ) && !message.contains(&missing),
            "{message}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_settings_file_others_may_read_is_told_by_path_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "MYAPI_TOKEN_KEY=k-0123456789abcdefghijklmnopqrstuv\n",
        )
        .unwrap();
        for (mode, exposed) in [
            (0o644, true),
            (0o640, true),
            (0o604, true),
            (0o600, false),
            (0o400, false),
            (0o700, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let found = ExposedFile::check(&path);
            assert_eq!(found.is_some(), exposed, "{mode:o}");
            if let Some(found) = found {
                assert_eq!(found.mode, mode);
                let warning = found.to_string();
                assert!(
                    warning.contains(&format!("{} is readable", path.display()))
                        && warning.contains(&format!("(mode 0{mode:o})")),
                    "{warning}"
                );
                assert!(!warning.contains("0123456789"), "{warning}");
            }
        }
        assert_eq!(ExposedFile::check(&dir.path().join("missing")), None);
    }

    #[test]
    fn zero_threads_means_one_per_core() {
        assert!(Threads::from(0).get() >= 1);
        assert_eq!(Threads::from(3).get(), 3);
    }
}

//! Settings, layered with the `config` crate, later wins:
//! `config/default.toml` as compiled in → the same file on disk, if present →
//! `config/$MYAPI_ENV.toml` → `.env` in the working directory → environment.
//!
//! `config/default.toml` is the one place a default is written: no Rust restates one, and a
//! field missing from every layer is a start-up error. Each tier deserialises only its own
//! sections from a [`SettingsSource`]: the services read `database`, `auth`, `movies` and
//! `token_key` ([`Settings`]); the web tier reads `server`.
//!
//! Environment variables are `MYAPI_` followed by the key path joined with `__`:
//! `MYAPI_DATABASE__DSN`, `MYAPI_SERVER__PORT`, `MYAPI_TOKEN_KEY`.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::error::one_line;

const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// What the services tier is configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: DatabaseSettings,
    /// The HS256 key (`MYAPI_TOKEN_KEY`). When unset, a random key is generated per process.
    pub token_key: Option<TokenKey>,
    pub auth: AuthSettings,
    pub movies: MoviesSettings,
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
    /// JWT `iss`, set on issue and required on verify.
    pub token_issuer: String,
    /// JWT `aud`: a token signed with a shared key for another deployment is refused.
    pub token_audience: String,
    pub token_lifetime_minutes: NonZeroU64,
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

/// A string that never shows itself in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// An HS256 key of at least 32 bytes (RFC 7518 §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct TokenKey(Secret);

impl TokenKey {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.expose().as_bytes()
    }
}

impl TryFrom<String> for TokenKey {
    type Error = String;

    fn try_from(key: String) -> Result<Self, String> {
        if key.len() < 32 {
            return Err("token_key: must be at least 32 bytes (MYAPI_TOKEN_KEY)".into());
        }
        Ok(Self(Secret(key)))
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
pub struct SettingsSource(config::Config);

impl SettingsSource {
    /// Every layer: the compiled-in defaults, `$MYAPI_CONFIG_DIR` (default `./config`),
    /// `./.env` and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        match dotenvy::from_path(".env") {
            Err(error) if !error.not_found() => return Err(ConfigError::DotEnv(error)),
            _ => {}
        }
        let dir = std::env::var_os("MYAPI_CONFIG_DIR")
            .map_or_else(|| PathBuf::from("config"), PathBuf::from);
        Self::load_from(&dir)
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
        Ok(Self(builder.add_source(environment).build()?))
    }

    /// The compiled-in defaults alone, untouched by files or the environment (tests, tools).
    pub fn defaults() -> Result<Self, ConfigError> {
        Ok(Self(Self::defaults_builder().build()?))
    }

    fn defaults_builder() -> config::ConfigBuilder<config::builder::DefaultState> {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
    }

    /// The sections `T` has fields for (the rest are ignored). Errors name the full key,
    /// e.g. `server.port`.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        Ok(self.0.clone().try_deserialize()?)
    }

    /// The services' sections, checked.
    pub fn services(&self) -> Result<Settings, ConfigError> {
        let settings: Settings = self.read()?;
        settings.validate()?;
        Ok(settings)
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
        let auth = &self.auth;
        if auth.password_min_chars.get() > auth.password_max_chars
            || auth.password_max_chars > MAX_PASSWORD_CHARS
        {
            return invalid(
                "auth.password_max_chars",
                "must be between auth.password_min_chars and 4096",
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

    #[test]
    fn the_compiled_in_defaults_are_complete_and_valid() {
        let settings = Settings::defaults().unwrap();
        assert_eq!(settings.auth.token_issuer, "myapi");
        assert!(settings.token_key.is_none());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut settings = Settings::defaults().unwrap();
        settings.token_key = Some(TokenKey::try_from("a".repeat(40)).unwrap());
        settings.database.dsn = Secret::new("postgres://u:pw@h/db");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("aaaa"), "{debug}");
        assert!(!debug.contains("pw@"), "{debug}");
    }

    #[test]
    fn short_token_key_is_refused() {
        assert!(TokenKey::try_from("short".to_owned()).is_err());
    }

    #[test]
    fn zero_threads_means_one_per_core() {
        assert!(Threads::from(0).get() >= 1);
        assert_eq!(Threads::from(3).get(), 3);
    }
}

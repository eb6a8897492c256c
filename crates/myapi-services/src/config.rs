//! Settings, layered with the `config` crate:
//! built-in defaults → `config/default.toml` → `config/$MYAPI_ENV.toml` → `.env` → environment.
//!
//! Environment variables are `MYAPI_` followed by the key path joined with `__`:
//! `MYAPI_DATABASE__DSN`, `MYAPI_SERVER__PORT`, `MYAPI_TOKEN_KEY`, `MYAPI_AUTH__TOKEN_LIFETIME_MINUTES`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Everything configurable, as loaded at start-up.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// HTTP server.
    pub server: ServerSettings,
    /// Database connection and pool.
    pub database: DatabaseSettings,
    /// HS256 signing key for access tokens (`MYAPI_TOKEN_KEY`), at least 32 bytes.
    /// When unset, a random key is generated per process.
    pub token_key: Option<Secret>,
    /// Login, hashing and tokens.
    pub auth: AuthSettings,
    /// The `movies` service.
    pub movies: MoviesSettings,
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    /// Listen address.
    pub host: String,
    /// Listen port (0 picks a free one).
    pub port: u16,
    /// Async worker threads; 0 means one per core.
    pub workers: usize,
    /// Threads per worker for blocking work (database queries); 0 means one per core, which
    /// measured best with PostgreSQL on the same host. With a remote (latency-bound)
    /// database, raise it toward `database.pool_size / workers`.
    pub blocking_threads: usize,
    /// Maximum concurrent connections per worker.
    pub max_connections: usize,
    /// Keep-alive for idle connections, in seconds.
    pub keep_alive_secs: u64,
    /// Time a client has to send its request head, in milliseconds.
    pub client_request_timeout_ms: u64,
    /// Time to wait for in-flight requests on shutdown, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Largest accepted request body, in bytes (`/token` has its own, smaller cap).
    pub max_body_bytes: usize,
    /// Largest accepted total size of request header names and values, in bytes.
    pub max_header_bytes: usize,
    /// Origins allowed by CORS; empty (the default) turns CORS off.
    /// In the environment: a comma-separated list.
    #[serde(deserialize_with = "string_or_list")]
    pub cors_allowed_origins: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            workers: 0,
            blocking_threads: 0,
            max_connections: 25_000,
            keep_alive_secs: 5,
            client_request_timeout_ms: 5_000,
            shutdown_timeout_secs: 10,
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// Database settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `postgres://…`, `sqlite://PATH` or a file path; empty means `myapi.db`.
    pub dsn: Secret,
    /// Maximum pooled connections.
    pub pool_size: u32,
    /// How long a request waits for a connection (and libpq for a connect), in seconds.
    pub connect_timeout_secs: u64,
    /// PostgreSQL `statement_timeout`, in milliseconds; 0 disables it.
    pub statement_timeout_ms: u64,
    /// Apply pending migrations when the server starts.
    pub run_migrations: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            dsn: Secret::default(),
            pool_size: 10,
            connect_timeout_secs: 3,
            statement_timeout_ms: 5_000,
            run_migrations: true,
        }
    }
}

impl DatabaseSettings {
    /// The pool's connection timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.max(1))
    }
}

/// Authentication settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// JWT `iss`, set on issue and required on verify.
    pub token_issuer: String,
    /// Access token lifetime, in minutes.
    pub token_lifetime_minutes: u64,
    /// Argon2id memory cost, KiB (OWASP minimum: 19456).
    pub argon2_memory_kib: u32,
    /// Argon2id iterations (OWASP minimum: 2).
    pub argon2_iterations: u32,
    /// Argon2id lanes (OWASP minimum: 1).
    pub argon2_parallelism: u32,
    /// Shortest accepted password, in characters.
    pub password_min_chars: usize,
    /// Longest accepted password, in characters (bounds hashing work).
    pub password_max_chars: usize,
    /// Password hashes computed at once; 0 means one per core.
    pub hash_concurrency: usize,
    /// Logins allowed to wait for a hashing slot; past it `/token` answers 503.
    pub hash_queue: usize,
    /// Failed logins one client IP may make before it is throttled.
    pub ip_failure_burst: u32,
    /// Seconds after which one failure of a client IP is forgotten.
    pub ip_failure_refill_secs: u64,
    /// Failed logins one account may take before it is throttled.
    pub account_failure_burst: u32,
    /// Seconds after which one failure of an account is forgotten.
    pub account_failure_refill_secs: u64,
    /// How long a token's revocation check is cached, in milliseconds.
    pub revocation_cache_ms: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            token_issuer: "myapi".into(),
            token_lifetime_minutes: 30,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            password_min_chars: 8,
            password_max_chars: 256,
            hash_concurrency: 0,
            hash_queue: 256,
            ip_failure_burst: 20,
            ip_failure_refill_secs: 6,
            account_failure_burst: 10,
            account_failure_refill_secs: 30,
            revocation_cache_ms: 2_000,
        }
    }
}

/// Settings of the `movies` service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MoviesSettings {
    /// Page size when `limit` is not given.
    pub default_page_size: u32,
    /// Largest accepted `limit`.
    pub max_page_size: u32,
}

impl Default for MoviesSettings {
    fn default() -> Self {
        Self {
            default_page_size: 100,
            max_page_size: 1000,
        }
    }
}

/// A string that never shows itself in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
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

/// Settings could not be loaded; `Display` is one line naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value has the wrong type.
    #[error("configuration error: {0}")]
    Load(String),
    /// A value is of the right type but not acceptable.
    #[error("configuration error: {key}: {message}")]
    Invalid {
        /// Dotted key path.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Smallest accepted `MYAPI_TOKEN_KEY`, in bytes (RFC 7518 §3.2 for HS256).
pub const MIN_TOKEN_KEY_BYTES: usize = 32;

impl Settings {
    /// Loads settings from `./config`, `./.env` and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        let dir = std::env::var_os("MYAPI_CONFIG_DIR")
            .map_or_else(|| PathBuf::from("config"), PathBuf::from);
        if let Err(error) = dotenvy::dotenv()
            && !error.not_found()
        {
            return Err(ConfigError::Load(format!(".env: {error}")));
        }
        Self::load_from(&dir)
    }

    /// Loads settings from `dir` and the environment (no `.env`).
    pub fn load_from(dir: &Path) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from(dir.join("default.toml")).required(false));
        if let Ok(env) = std::env::var("MYAPI_ENV")
            && !env.is_empty()
        {
            builder = builder
                .add_source(config::File::from(dir.join(format!("{env}.toml"))).required(false));
        }
        let settings: Settings = builder
            .add_source(
                config::Environment::with_prefix("MYAPI")
                    .prefix_separator("_")
                    .separator("__"),
            )
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError::Load(e.to_string().replace('\n', " ")))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, message: &str) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        }
        if let Some(key) = &self.token_key
            && key.expose().len() < MIN_TOKEN_KEY_BYTES
        {
            return invalid("token_key", "must be at least 32 bytes (MYAPI_TOKEN_KEY)");
        }
        if self.database.pool_size == 0 {
            return invalid("database.pool_size", "must be at least 1");
        }
        if self.auth.token_lifetime_minutes == 0 {
            return invalid("auth.token_lifetime_minutes", "must be at least 1");
        }
        if self.auth.password_min_chars == 0
            || self.auth.password_min_chars > self.auth.password_max_chars
        {
            return invalid(
                "auth.password_min_chars",
                "must be between 1 and auth.password_max_chars",
            );
        }
        if self.auth.password_max_chars > 4096 {
            return invalid("auth.password_max_chars", "must be at most 4096");
        }
        if self.auth.ip_failure_burst == 0 || self.auth.account_failure_burst == 0 {
            return invalid("auth.*_failure_burst", "must be at least 1");
        }
        if self.movies.max_page_size == 0
            || self.movies.default_page_size > self.movies.max_page_size
        {
            return invalid(
                "movies.default_page_size",
                "must be between 1 and movies.max_page_size",
            );
        }
        crate::auth::PasswordHasher::new(&self.auth)
            .map(|_| ())
            .map_err(|e| ConfigError::Invalid {
                key: "auth.argon2_*",
                message: e.to_string(),
            })
    }
}

/// Accepts `["a", "b"]` (TOML) or `"a,b"` (environment).
fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
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
    fn secrets_are_redacted_in_debug() {
        let settings = Settings {
            token_key: Some(Secret::new("a".repeat(40))),
            database: DatabaseSettings {
                dsn: Secret::new("postgres://u:pw@h/db"),
                ..Default::default()
            },
            ..Default::default()
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("aaaa"), "{debug}");
        assert!(!debug.contains("pw@"), "{debug}");
    }

    #[test]
    fn short_token_key_is_refused() {
        let settings = Settings {
            token_key: Some(Secret::new("short")),
            ..Default::default()
        };
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("token_key"), "{error}");
    }

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }
}

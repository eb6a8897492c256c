//! The one connection type, its pool, and the DSN that picks the backend.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::ConnectionError;
use diesel::connection::{InstrumentationEvent, SimpleConnection};
use diesel::prelude::*;
use diesel::r2d2::R2D2Connection;

use crate::{DbError, one_line};

/// A connection to either backend. Queries written once against this type run on both:
/// PostgreSQL in production, an embedded SQLite file as the zero-setup default.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// A connection checked out of a [`DbPool`].
pub type PooledConnection = r2d2::PooledConnection<DbConnectionManager>;

/// Which backend a DSN names, parsed once so nothing downstream guesses.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A `postgres://` or `postgresql://` URL, passed to libpq as is.
    Postgres(String),
    /// A SQLite database file.
    Sqlite(PathBuf),
}

/// The SQLite file used when no DSN is configured.
pub const DEFAULT_SQLITE_FILE: &str = "myapi.db";

impl DatabaseUrl {
    /// Parses a DSN: `postgres://`/`postgresql://` or a libpq keyword/value string
    /// (`host=a,b dbname=myapi target_session_attrs=read-write`) → PostgreSQL, passed to
    /// libpq as is; `sqlite://PATH` or a plain path → SQLite; empty → `myapi.db` in the
    /// working directory. Other schemes, and a string with `=` that is not a keyword/value
    /// string, are refused rather than taken for a file name.
    pub fn parse(dsn: &str) -> Result<Self, DbError> {
        let dsn = dsn.trim();
        if dsn.is_empty() {
            return Ok(Self::Sqlite(PathBuf::from(DEFAULT_SQLITE_FILE)));
        }
        if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
            return Ok(Self::Postgres(dsn.to_owned()));
        }
        if let Some(path) = dsn.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(DbError::InvalidDsn("sqlite:// needs a file path".into()));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = dsn.split_once("://") {
            return Err(DbError::InvalidDsn(format!(
                "unsupported scheme `{scheme}://` (use postgres://, postgresql:// or sqlite://)"
            )));
        }
        if is_keyword_value_dsn(dsn) {
            return Ok(Self::Postgres(dsn.to_owned()));
        }
        if dsn.contains('=') {
            return Err(DbError::InvalidDsn(
                "neither a URL nor a libpq keyword/value string such as `host=db dbname=myapi` \
                 (every keyword one libpq knows, quoted values closed); a SQLite file whose \
                 name holds `=` is written sqlite://PATH"
                    .into(),
            ));
        }
        Ok(Self::Sqlite(PathBuf::from(dsn)))
    }

    /// `"postgres"` or `"sqlite"`, for logs and tests.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }
}

/// Shows the DSN with its secrets replaced by `***` ([`redacted_dsn`]), safe for logs.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => f.write_str(&redacted_dsn(url)),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// The connection parameters libpq reads a secret from: the server password and the
/// passphrase of the client's TLS key. The others (`passfile` and `sslkey` included) name
/// files or options and are shown.
const SECRET_PARAMETERS: [&str; 2] = ["password", "sslpassword"];

/// Compared in any case: libpq itself refuses `PASSWORD`, but a log must not show it either.
fn is_secret(keyword: &str) -> bool {
    SECRET_PARAMETERS
        .iter()
        .any(|secret| keyword.trim().eq_ignore_ascii_case(secret))
}

/// `dsn` as a log may show it, with `***` for the password of a URL's user info and for the
/// value of every [secret parameter](SECRET_PARAMETERS), whether in a URL's query string or
/// in libpq's `keyword=value` form. What starts with `scheme://` is a URL; one that does not
/// parse is hidden after its scheme, since its parts cannot be told apart.
pub fn redacted_dsn(dsn: &str) -> String {
    match url_scheme(dsn) {
        Some(scheme) => redacted_url(dsn).unwrap_or_else(|| format!("{scheme}://***")),
        None => redacted_keyword_values(dsn),
    }
}

/// The scheme of `dsn` if it starts with one (RFC 3986 §3.1) and `://`. A `://` elsewhere,
/// inside a keyword/value password say, does not make a URL.
fn url_scheme(dsn: &str) -> Option<&str> {
    let (scheme, _) = dsn.trim_start().split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// `None` when `dsn` is not a URL. Secret query values are replaced where they are written
/// and the rest of the query is kept as it was; keys are compared percent-decoded, as libpq
/// reads them. Returns `dsn` itself when nothing is secret.
fn redacted_url(dsn: &str) -> Option<String> {
    let mut url = url::Url::parse(dsn.trim()).ok()?;
    let mut redacted = false;
    if url.password().is_some() {
        url.set_password(Some("***")).ok()?;
        redacted = true;
    }
    if let Some(query) = url.query() {
        let mut masked = false;
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let key = pair.split_once('=').map_or(pair, |(key, _)| key);
                let decoded = url::form_urlencoded::parse(key.as_bytes()).next();
                if decoded.is_some_and(|(key, _)| is_secret(&key)) {
                    masked = true;
                    format!("{key}=***")
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        if masked {
            url.set_query(Some(&pairs.join("&")));
            redacted = true;
        }
    }
    Some(if redacted {
        url.to_string()
    } else {
        dsn.to_owned()
    })
}

/// libpq's `keyword = value` form, with every secret value (quoted or not, escapes
/// included) replaced by `***`. Whatever does not fit the form is kept as it is.
fn redacted_keyword_values(dsn: &str) -> String {
    let mut shown = String::with_capacity(dsn.len());
    let mut from = 0;
    for (keyword, value) in keyword_values(dsn).0 {
        if is_secret(keyword) && !value.is_empty() {
            shown.push_str(&dsn[from..value.start]);
            shown.push_str("***");
            from = value.end;
        }
    }
    shown.push_str(&dsn[from..]);
    shown
}

/// The `keyword = value` entries of a libpq connection string, each value as a byte range
/// of `dsn`, and whether all of `dsn` fits that form. A value runs to the next blank, or a
/// quoted one to its closing quote or the end; a backslash escapes the next byte.
fn keyword_values(dsn: &str) -> (Vec<(&str, std::ops::Range<usize>)>, bool) {
    let bytes = dsn.as_bytes();
    let blank_from = |mut at: usize| {
        while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        at
    };
    let mut entries = Vec::new();
    let mut well_formed = true;
    let mut at = blank_from(0);
    while at < bytes.len() {
        // At a character that is not blank: a keyword, or a stray `=` (ASCII, stepped over).
        let keyword_start = at;
        while bytes
            .get(at)
            .is_some_and(|&b| b != b'=' && !b.is_ascii_whitespace())
        {
            at += 1;
        }
        let keyword = &dsn[keyword_start..at];
        at = blank_from(at);
        if bytes.get(at) != Some(&b'=') || keyword.is_empty() {
            well_formed = false;
            at = blank_from(at + usize::from(keyword.is_empty()));
            continue;
        }
        at = blank_from(at + 1);
        let value_start = at;
        if bytes.get(at) == Some(&b'\'') {
            at += 1;
            let mut closed = false;
            while let Some(&byte) = bytes.get(at) {
                at += if byte == b'\\' { 2 } else { 1 };
                if byte == b'\'' {
                    closed = true;
                    break;
                }
            }
            well_formed &= closed;
        } else {
            while let Some(&byte) = bytes.get(at).filter(|b| !b.is_ascii_whitespace()) {
                at += if byte == b'\\' { 2 } else { 1 };
            }
        }
        // An escape may step past the end, or into a multibyte character, whose other bytes
        // are never ASCII: every stop but the end is at an ASCII byte, a character boundary.
        at = at.min(bytes.len());
        entries.push((keyword, value_start..at));
        at = blank_from(at);
    }
    (entries, well_formed)
}

/// Every keyword libpq 15 accepts in a connection string.
const LIBPQ_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "service",
    "target_session_attrs",
];

/// Whether `dsn` is a libpq keyword/value string: all of it `keyword = value` entries,
/// every keyword one libpq knows.
fn is_keyword_value_dsn(dsn: &str) -> bool {
    let (entries, well_formed) = keyword_values(dsn);
    well_formed
        && !entries.is_empty()
        && entries
            .iter()
            .all(|(keyword, _)| LIBPQ_KEYWORDS.contains(keyword))
}

/// Per-connection settings applied right after connecting.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionOptions {
    /// PostgreSQL `statement_timeout`; zero disables it.
    pub statement_timeout: Duration,
    /// SQLite `busy_timeout` (how long a writer waits for the lock).
    pub busy_timeout: Duration,
    /// libpq `connect_timeout` when the DSN does not set one.
    pub connect_timeout: Duration,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            statement_timeout: Duration::ZERO,
            busy_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens a PostgreSQL connection, after initialising OpenSSL (libpq's TLS) the way the
/// `openssl` crate does: without the exit handler that frees OpenSSL's locks. With that
/// handler, a thread still inside libpq while the process exits (a cache listener waiting
/// for notifications) took a freed lock and crashed the exit with SIGSEGV. Only the first
/// initialisation in a process chooses, hence before every connection.
pub(crate) fn connect_pg(dsn: &str) -> ConnectionResult<PgConnection> {
    openssl_sys::init();
    PgConnection::establish(dsn)
}

/// Opens one connection to the backend `url` names and applies `options`:
/// `search_path` and `statement_timeout` on PostgreSQL; WAL, `busy_timeout` and
/// foreign keys on SQLite.
pub fn establish(
    url: &DatabaseUrl,
    options: &ConnectionOptions,
) -> Result<DbConnection, diesel::r2d2::Error> {
    use diesel::r2d2::Error;
    match url {
        DatabaseUrl::Postgres(dsn) => {
            let dsn = with_connect_timeout(dsn, options.connect_timeout);
            let mut conn = connect_pg(&dsn).map_err(Error::ConnectionError)?;
            conn.batch_execute(&format!(
                "SET search_path TO myapi, public; SET statement_timeout = {}",
                options.statement_timeout.as_millis()
            ))
            .map_err(Error::QueryError)?;
            Ok(DbConnection::Pg(conn))
        }
        DatabaseUrl::Sqlite(path) => {
            create_private(path).map_err(|e| {
                Error::ConnectionError(ConnectionError::BadConnection(e.to_string()))
            })?;
            let path = path.to_string_lossy();
            let mut conn = SqliteConnection::establish(&path).map_err(Error::ConnectionError)?;
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                options.busy_timeout.as_millis()
            ))
            .map_err(Error::QueryError)?;
            Ok(DbConnection::Sqlite(conn))
        }
    }
}

/// Creates the SQLite file readable by its owner only (0600), unless it exists already.
/// SQLite gives its `-wal` and `-shm` files the database file's mode, so they follow.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    if path.as_os_str() == ":memory:" || path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// Adds libpq's `connect_timeout` so an unreachable host fails in seconds, not minutes.
fn with_connect_timeout(dsn: &str, timeout: Duration) -> String {
    let (has_timeout, separator) = match url_scheme(dsn) {
        None => (
            keyword_values(dsn)
                .0
                .iter()
                .any(|(keyword, _)| *keyword == "connect_timeout"),
            ' ',
        ),
        // Split by hand: a multi-host URL (`h1:p1,h2:p2`) is not one the url crate parses.
        Some(_) => (
            dsn.split_once('?').is_some_and(|(_, query)| {
                query
                    .split('&')
                    .any(|pair| pair.split('=').next() == Some("connect_timeout"))
            }),
            if dsn.contains('?') { '&' } else { '?' },
        ),
    };
    if has_timeout {
        return dsn.to_owned();
    }
    format!(
        "{dsn}{separator}connect_timeout={}",
        timeout.as_secs().max(1)
    )
}

/// r2d2 manager that connects to the backend chosen by [`DatabaseUrl`] — never by trial,
/// so an unreachable PostgreSQL is an error rather than a SQLite file named `postgres:`.
#[derive(Debug)]
pub struct DbConnectionManager {
    url: DatabaseUrl,
    options: ConnectionOptions,
    health: Arc<PoolHealth>,
}

impl DbConnectionManager {
    /// A manager for `url` that applies `options` to each new connection.
    pub fn new(url: DatabaseUrl, options: ConnectionOptions) -> Self {
        Self {
            url,
            options,
            health: Arc::default(),
        }
    }
}

impl r2d2::ManageConnection for DbConnectionManager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        let mut conn =
            establish(&self.url, &self.options).inspect_err(|_| self.health.report_failure())?;
        let health = Arc::clone(&self.health);
        let watch = move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::FinishQuery {
                error: Some(error), ..
            } = event
                && is_connection_suspect(error)
            {
                health.report_failure();
            }
        };
        match &mut conn {
            DbConnection::Pg(inner) => inner.set_instrumentation(watch),
            DbConnection::Sqlite(inner) => inner.set_instrumentation(watch),
        }
        Ok(conn)
    }

    /// Pings only while the pool's health says connections are suspect: in steady state a
    /// checkout costs no extra round trip; after a failure, stale connections are weeded out.
    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        if self.health.validating() {
            conn.ping().map_err(diesel::r2d2::Error::QueryError)
        } else {
            Ok(())
        }
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    pub max_size: u32,
    /// How long a caller waits for a connection before giving up.
    pub connection_timeout: Duration,
    pub connection: ConnectionOptions,
}

/// A pool of [`DbConnection`]s plus its health; cheap to clone, create it once per process.
#[derive(Clone, Debug)]
pub struct DbPool {
    pool: r2d2::Pool<DbConnectionManager>,
    health: Arc<PoolHealth>,
}

impl DbPool {
    /// Checks out a connection: an idle one at once if there is one; otherwise waits up to
    /// the connection timeout — unless the database is known to be failing and another
    /// caller is already probing it, in which case it fails at once.
    pub fn checkout(&self) -> Result<PooledConnection, DbError> {
        if let Some(conn) = self.pool.try_get() {
            return Ok(conn);
        }
        let probing = self.health.failing.load(Ordering::Relaxed);
        if probing && self.health.probing.swap(true, Ordering::Acquire) {
            return Err(DbError::Unavailable(
                "database unreachable (failing fast while it is probed)".into(),
            ));
        }
        let result = self.pool.get();
        match &result {
            Ok(_) => self.health.failing.store(false, Ordering::Relaxed),
            Err(_) => self.health.report_failure(),
        }
        if probing {
            self.health.probing.store(false, Ordering::Release);
        }
        result.map_err(DbError::from)
    }

    /// Checks out a connection for work that has a fallback: `Ok(None)` when none is free
    /// within `wait` (the pool is busy), an error at once while the database is known to be
    /// failing. It never probes the database nor reports a failure.
    pub fn checkout_briefly(&self, wait: Duration) -> Result<Option<PooledConnection>, DbError> {
        if let Some(conn) = self.pool.try_get() {
            return Ok(Some(conn));
        }
        if self.health.failing.load(Ordering::Relaxed) {
            return Err(DbError::Unavailable("database unreachable".into()));
        }
        Ok(self.pool.get_timeout(wait).ok())
    }

    /// Connections open now, and how many of them are idle.
    pub fn state(&self) -> r2d2::State {
        self.pool.state()
    }

    /// The most connections the pool opens.
    pub fn max_size(&self) -> u32 {
        self.pool.max_size()
    }
}

/// What a pool knows about its database's health.
///
/// diesel cannot tell that a pooled connection's socket died (its `is_broken` looks only at
/// transaction state), and a ping on every checkout costs a round trip per request. So a
/// connection-level failure — a failed connect, or a query error seen by the connection's
/// instrumentation — is recorded here; for a while afterwards every checkout is pinged,
/// which discards stale connections. While connects fail, one caller at a time probes.
#[derive(Debug)]
pub struct PoolHealth {
    started: Instant,
    last_failure_ms: AtomicU64,
    failing: AtomicBool,
    probing: AtomicBool,
}

/// How long after the last failure checkouts are validated with a ping.
const VALIDATE_AFTER_FAILURE: Duration = Duration::from_secs(30);

impl Default for PoolHealth {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_failure_ms: AtomicU64::new(u64::MAX),
            failing: AtomicBool::new(false),
            probing: AtomicBool::new(false),
        }
    }
}

impl PoolHealth {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn report_failure(&self) {
        self.last_failure_ms.store(self.now_ms(), Ordering::Relaxed);
        self.failing.store(true, Ordering::Relaxed);
    }

    fn validating(&self) -> bool {
        let last = self.last_failure_ms.load(Ordering::Relaxed);
        last != u64::MAX
            && self.now_ms().saturating_sub(last) < VALIDATE_AFTER_FAILURE.as_millis() as u64
    }
}

/// Whether a query error means the connection itself is gone. Errors a query's input or a
/// timeout causes are not: counting them would let one client's bad request make every
/// checkout ping, and fail fast, for the next half minute.
fn is_connection_suspect(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        error,
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _
        ) | Error::BrokenTransactionManager
    )
}

/// Builds the pool and opens its first connection, so a bad DSN fails here, at start-up.
///
/// `min_idle` is 0: r2d2 then connects only while a caller waits, never in the background.
/// A background connect still running when the process exits can crash inside libpq's TLS
/// library as it is torn down, so none is ever left in flight.
pub fn build_pool(url: &DatabaseUrl, options: PoolOptions) -> Result<DbPool, DbError> {
    let manager = DbConnectionManager::new(url.clone(), options.connection);
    let health = Arc::clone(&manager.health);
    let pool = r2d2::Pool::builder()
        .max_size(options.max_size.max(1))
        .min_idle(Some(0))
        .connection_timeout(options.connection_timeout)
        .error_handler(Box::new(LogErrorHandler))
        .build(manager)
        .map_err(|e| DbError::Unavailable(one_line(&e.to_string())))?;
    drop(pool.get()?);
    Ok(DbPool { pool, health })
}

/// Logs failed connection attempts once each, at warn level, without the DSN.
#[derive(Debug)]
struct LogErrorHandler;

impl r2d2::HandleError<diesel::r2d2::Error> for LogErrorHandler {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        log::warn!(
            "database connection failed: {}",
            one_line(&error.to_string())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_picks_the_backend() {
        assert_eq!(
            DatabaseUrl::parse("").unwrap(),
            DatabaseUrl::Sqlite("myapi.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").unwrap(),
            DatabaseUrl::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("data/app.db").unwrap(),
            DatabaseUrl::Sqlite("data/app.db".into())
        );
        assert!(matches!(
            DatabaseUrl::parse("postgresql://u@h/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        assert!(DatabaseUrl::parse("mysql://u@h/db").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        for keyword_value in [
            "host=a,b dbname=myapi target_session_attrs=read-write",
            "host = db port=5432 user=app password='it\\'s x' sslmode=require",
            "dbname=myapi",
        ] {
            assert!(
                matches!(
                    DatabaseUrl::parse(keyword_value).unwrap(),
                    DatabaseUrl::Postgres(_)
                ),
                "{keyword_value}"
            );
        }
        for ambiguous in [
            "host=db nonsense=1",
            "host=db dbname",
            "host='db",
            "data/a=b.db",
            "=x",
        ] {
            assert!(DatabaseUrl::parse(ambiguous).is_err(), "{ambiguous}");
        }
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/a=b.db").unwrap(),
            DatabaseUrl::Sqlite("data/a=b.db".into())
        );
    }

    #[test]
    fn connect_timeout_is_added_in_the_dsn_s_own_form() {
        let five = Duration::from_secs(5);
        assert_eq!(
            with_connect_timeout("host=db dbname=x", five),
            "host=db dbname=x connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db", five),
            "postgres://h/db?connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?sslmode=require", five),
            "postgres://h/db?sslmode=require&connect_timeout=5"
        );
        for set in [
            "host=db connect_timeout=9",
            "postgres://h/db?connect_timeout=9",
        ] {
            assert_eq!(with_connect_timeout(set, five), set);
        }
        assert_eq!(
            with_connect_timeout("host=db application_name=connect_timeout", five),
            "host=db application_name=connect_timeout connect_timeout=5"
        );
    }

    #[test]
    fn display_never_shows_the_password() {
        let url =
            DatabaseUrl::parse("postgres://app:s3cret@db:5432/myapi?sslmode=require").unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db:5432/myapi?sslmode=require"
        );
        let url = DatabaseUrl::parse("postgres://db/myapi?user=a&password=s3cret&x=1").unwrap();
        assert!(!format!("{url:?}").contains("s3cret"));
        let url = DatabaseUrl::parse("host=db password=s3cret sslpassword='a b'").unwrap();
        assert_eq!(url.to_string(), "host=db password=*** sslpassword=***");
    }

    #[test]
    fn every_secret_of_a_url_is_masked() {
        for (dsn, shown) in [
            (
                "postgres://app:s3cret@db/myapi?sslmode=verify-full&sslpassword=k3y&sslkey=/k.pem",
                "postgres://app:***@db/myapi?sslmode=verify-full&sslpassword=***&sslkey=/k.pem",
            ),
            (
                "postgresql://db/myapi?PASSWORD=s3cret&SslPassword=k3y&passfile=/p",
                "postgresql://db/myapi?PASSWORD=***&SslPassword=***&passfile=/p",
            ),
            (
                "postgres://db/myapi?pass%77ord=s3cret&ssl%70assword=k%33y",
                "postgres://db/myapi?pass%77ord=***&ssl%70assword=***",
            ),
            (
                "postgres://app:p@ss@db/myapi",
                "postgres://app:***@db/myapi",
            ),
            ("POSTGRES://app:s3cret@db", "postgres://app:***@db"),
            (
                "postgres://app@db:5432/myapi?sslmode=require",
                "postgres://app@db:5432/myapi?sslmode=require",
            ),
            (
                "postgres://app:s3cret@db:5432,db2:5433/myapi",
                "postgres://***",
            ),
            ("sqlite:///var/lib/my app.db", "sqlite:///var/lib/my app.db"),
        ] {
            assert_eq!(redacted_dsn(dsn), shown, "{dsn}");
        }
    }

    #[test]
    fn every_secret_of_a_keyword_value_dsn_is_masked() {
        for (dsn, shown) in [
            (
                "host=db user=app password=s3cret dbname=myapi",
                "host=db user=app password=*** dbname=myapi",
            ),
            (
                "host = db  password = s3cret\tsslpassword=k3y sslkey=/k.pem",
                "host = db  password = ***\tsslpassword=*** sslkey=/k.pem",
            ),
            (
                r"password='it\'s a secret' sslpassword='k\\' host=db",
                "password=*** sslpassword=*** host=db",
            ),
            (
                r"PASSWORD=s\ 3cret SSLPASSWORD=k3y",
                "PASSWORD=*** SSLPASSWORD=***",
            ),
            ("password='never closed host=db", "password=***"),
            ("host=db password=a://b", "host=db password=***"),
            ("password=://x", "password=***"),
            // libpq skips blanks after `=`: the password is `host=db`.
            ("password= host=db", "password= ***"),
            ("password=", "password="),
            ("data/app.db", "data/app.db"),
            ("", ""),
            ("password=caf\u{e9}\\\u{e9} x=\\", "password=*** x=\\"),
            // A stray `=` and then a blank before a multibyte character.
            ("PASSWORD='x' =\t% \u{e9}H", "PASSWORD=*** =\t% \u{e9}H"),
        ] {
            assert_eq!(redacted_dsn(dsn), shown, "{dsn}");
        }
    }

    proptest::proptest! {
        #[test]
        fn a_secret_never_shows_whatever_surrounds_it(
            before in "[ -~\u{e9}\t]{0,30}",
            after in "[ -~\u{e9}\t]{0,30}",
            keyword in "([sS][sS][lL])?[pP][aA][sS][sS][wW][oO][rR][dD]",
            quoted in proptest::bool::ANY,
        ) {
            // What libpq would read as part of another value, or as a URL, is not a secret
            // parameter here.
            proptest::prop_assume!(!before.contains(['\'', '\\', '=']) && !before.contains("://"));
            let secret = "Zq7Xw9Vy";
            let value = if quoted { format!("'{secret}'") } else { secret.to_owned() };
            let dsn = format!("{before} {keyword}={value} {after}");
            let shown = redacted_dsn(&dsn);
            proptest::prop_assert!(!shown.contains(secret), "{dsn:?} -> {shown:?}");
        }

        #[test]
        fn any_dsn_is_redacted_without_panicking(dsn in "\\PC{0,80}") {
            redacted_dsn(&dsn);
        }
    }
}

//! Shared by the integration tests: a throwaway database on each backend.
//!
//! SQLite always runs, in a temp dir. PostgreSQL runs at `MYAPI_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) in a database created for the
//! test and dropped after. If PostgreSQL is unreachable the PostgreSQL tests say so on
//! stderr and skip — unless `CI=true`, where they fail.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod pg_cluster;

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

use myapi_services::auth::TokenKey;
use myapi_services::config::Settings;
use myapi_services::secrets::Secret;

/// The two backends every data-touching test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in a temp dir.
    Sqlite,
    /// The PostgreSQL at `MYAPI_TEST_POSTGRES_URL`.
    Postgres,
}

/// A database that lives as long as the test.
pub struct TestDb {
    /// DSN to hand to the app or the CLI.
    pub dsn: String,
    /// Directory the test may use (holds the SQLite file).
    pub dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// A fresh empty database, or `None` when PostgreSQL is unreachable outside CI.
    pub fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let dsn = format!("sqlite://{}", dir.path().join("test.db").display());
                Some(Self {
                    dsn,
                    dir,
                    postgres: None,
                })
            }
            Backend::Postgres => {
                let admin = admin_url();
                let name = unique_name();
                match myapi_services::database::create_postgres_database(&admin, &name) {
                    Ok(()) => {
                        let dsn = replace_database(&admin, &name);
                        Some(Self {
                            dsn,
                            dir,
                            postgres: Some((admin, name)),
                        })
                    }
                    Err(error) => {
                        let message = format!(
                            "PostgreSQL at {} is unreachable ({})",
                            myapi_services::database::redacted_dsn(&admin),
                            myapi_services::error_chain(&error)
                        );
                        assert!(!in_ci(), "{message}; CI=true requires it");
                        let _ = writeln!(std::io::stderr(), "SKIPPED PostgreSQL test: {message}");
                        None
                    }
                }
            }
        }
    }

    /// A database the test set up itself (on a [`TestCluster`]), left as it is after.
    pub fn at(dsn: String) -> Self {
        Self {
            dsn,
            dir: tempfile::tempdir().expect("temp dir"),
            postgres: None,
        }
    }

    /// The services' settings on this database, with a fixed token key.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::defaults().unwrap();
        settings.database.dsn = Secret::new(self.dsn.clone());
        settings.database.pool_size = 8.try_into().unwrap();
        // Request limits stay on, so every request goes through them, but at rates no test
        // reaches; `tests/http/rate_limits.rs` sets its own.
        for class in [&mut settings.limits.read, &mut settings.limits.write] {
            class.per_second = 1_000_000.try_into().unwrap();
            class.burst = 1_000_000.try_into().unwrap();
        }
        settings.token_key = Some(
            TokenKey::try_from(TEST_TOKEN_KEY.to_owned())
                .unwrap()
                .into(),
        );
        settings
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.postgres {
            let _ = myapi_services::database::drop_postgres_database(admin, name);
        }
    }
}

/// The token key tests sign with (32+ bytes).
pub const TEST_TOKEN_KEY: &str = "test-token-key-0123456789abcdef-0123456789";

/// Whether we run under CI (`CI=true`), where skipping PostgreSQL is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A PostgreSQL cluster of the test's own ([`pg_cluster`]) in a temp dir, initialised but not
/// started, for tests that change the server (TLS) or stop it (an outage).
pub struct TestCluster {
    /// Declared before `dir`, so the server stops before its directory is removed.
    cluster: pg_cluster::PgCluster,
    /// Free for the test's own files besides the cluster's `pg/`.
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    /// `None` after a notice on stderr when the PostgreSQL server binaries are missing, except
    /// under `CI=true`, where that fails `test` (named in the messages). `settings`: the
    /// server's `name=value` settings beyond [`pg_cluster::PgCluster::start`]'s own.
    pub fn new(test: &str, settings: &[&str]) -> Option<Self> {
        let Some(bin) = pg_cluster::binaries() else {
            assert!(
                !in_ci(),
                "CI=true needs PostgreSQL server binaries (initdb, pg_ctl) for {test}"
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: no PostgreSQL server binaries"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // The server runs as `postgres` when we are root: let it through to its `pg/`.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let cluster = pg_cluster::PgCluster::new(bin, dir.path().join("pg"))
            .unwrap()
            .with_settings(settings);
        cluster.init().unwrap();
        Some(Self { cluster, dir })
    }
}

impl std::ops::Deref for TestCluster {
    type Target = pg_cluster::PgCluster;

    fn deref(&self) -> &Self::Target {
        &self.cluster
    }
}

/// `MYAPI_TEST_POSTGRES_URL` or the local default.
pub fn admin_url() -> String {
    std::env::var("MYAPI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "myapi_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// `url` with its database (path) replaced by `name`.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Runs a test body once per backend: `both_backends!(name, |db| async { ... })` defines
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(db) = $crate::support::TestDb::new($crate::support::Backend::Sqlite) {
                    super::$name(db).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::support::TestDb::new($crate::support::Backend::Postgres) {
                    super::$name(db).await;
                }
            }
        }
    };
}

/// `sql` run by `psql` on `dsn`, as an operator would; its unaligned output.
pub fn psql(dsn: &str, sql: &str) -> String {
    let output = std::process::Command::new("psql")
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

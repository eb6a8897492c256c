//! Business logic of myapi: one module per service (`auth`, `movies`, `audit`), each a
//! service plus its data manager; configuration; and the typed [`ServiceError`].
//!
//! This tier knows diesel (through `myapi-models`) but never HTTP: web and CLI call it.
//! Most methods block (database, argon2) and async callers run them on a blocking pool;
//! the async ones ([`auth::AuthService::login`], [`auth::AuthService::authenticate`]) keep
//! their blocking parts to themselves.

pub mod audit;
pub mod auth;
mod bounded;
pub mod config;
pub mod database;
mod error;
pub mod movies;
pub mod query;
pub mod request_context;
pub mod secrets;
// [xtask] service modules

pub use config::{Settings, SettingsSource};
pub use database::Database;
pub use error::{BoxError, InvalidField, ServiceError, error_chain};

use audit::AuditService;
use auth::AuthService;
use movies::MovieService;

/// Every service, built once at start-up and shared (cheap to clone).
#[derive(Clone)]
pub struct Services {
    pub database: Database,
    pub auth: AuthService,
    pub movies: MovieService,
    pub audit: AuditService,
    // [xtask] service fields
}

impl Services {
    /// Connects the pool, applies migrations when `run_migrations` is set, and builds each
    /// service (blocking).
    pub fn build(settings: &Settings, run_migrations: bool) -> Result<Self, ServiceError> {
        let database = Database::connect(&settings.database)?;
        if run_migrations {
            let applied = database.migrate()?;
            if !applied.is_empty() {
                log::info!("applied migrations: {}", applied.join(", "));
            }
        }
        Ok(Self {
            auth: AuthService::new(database.clone(), settings)?,
            movies: MovieService::new(database.clone(), &settings.movies),
            audit: AuditService::new(database.clone(), &settings.audit),
            // [xtask] service constructors
            database,
        })
    }
}

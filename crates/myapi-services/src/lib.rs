//! Business logic of myapi: one module per service (`auth`, `movies`), each a service plus
//! its data manager; configuration; and the typed [`ServiceError`].
//!
//! This tier knows diesel (through `myapi-models`) but never HTTP: web and CLI call it.
//! Most methods block (database, argon2); async callers must run them on a blocking pool.

pub mod auth;
pub mod config;
pub mod database;
mod error;
pub mod movies;
// [xtask] service modules

pub use config::Settings;
pub use database::Database;
pub use error::{InvalidField, ServiceError};

use auth::AuthService;
use movies::MovieService;

/// Every service, built once at start-up and shared (cheap to clone).
#[derive(Clone)]
pub struct Services {
    /// The database handle (readiness, migrations).
    pub database: Database,
    /// Users, login and tokens.
    pub auth: AuthService,
    /// Movies.
    pub movies: MovieService,
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
            // [xtask] service constructors
            database,
        })
    }
}

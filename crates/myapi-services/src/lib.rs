//! Business logic of myapi: one module per service (`auth`, `movies`, `audit`), each a
//! service plus its data manager; configuration; and the typed [`ServiceError`].
//!
//! This tier knows diesel (through `myapi-models`) but never HTTP: web and CLI call it.
//! Most methods block (database, argon2) and async callers run them on a blocking pool;
//! the async ones ([`auth::AuthService::login`], [`auth::AuthService::authenticate`]) keep
//! their blocking parts to themselves.

mod app;
pub mod audit;
pub mod auth;
mod bounded;
pub mod config;
pub mod database;
mod error;
pub mod hooks;
pub mod idempotency;
pub mod limits;
pub mod mail;
pub mod movies;
pub mod query;
pub mod request_context;
pub mod secrets;
// [xtask] service modules

pub use app::Services;
pub use config::{Settings, SettingsSource};
pub use database::Database;
pub use error::{BoxError, InvalidField, ServiceError, error_chain};

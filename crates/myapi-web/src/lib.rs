//! Presentation tier of myapi: actix-web routes (one scope per service), extractors, the
//! single error → HTTP mapping, OpenAPI and Swagger UI.
//!
//! Depends on `myapi-services` and `myapi-schemas` only — never on the data tier. Service
//! calls that block (database, argon2) run inside [`blocking::block`].

pub mod blocking;
pub mod client;
pub mod error;
pub mod extract;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod query;
pub mod rate_limit;
pub mod routes;
pub mod startup;

pub use startup::{Application, ServerSettings, StartupError, Stopped};
pub use {logging::LogSettings, metrics::MetricsSettings};

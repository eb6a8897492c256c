//! Presentation tier of myapi: actix-web routes (one scope per service), extractors, the
//! single error → HTTP mapping, OpenAPI and Swagger UI.
//!
//! Depends on `myapi-services` and `myapi-schemas` only — never on the data tier. Service
//! calls that block (database, argon2) run inside `web::block`.

pub mod client;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod startup;

pub use startup::{Application, ServerSettings, StartupError};

//! The API's data shapes: what goes over the wire, with serde and OpenAPI schemas.
//!
//! This crate knows nothing of diesel or actix: services build these shapes and web
//! serialises them. No shape here ever carries a password hash.

mod auth;
mod errors;
mod movies;
// [xtask] schema modules

pub use auth::{TokenForm, TokenResponse, UserSchema};
pub use errors::{FieldError, OAuthErrorResponse, Problem};
pub use movies::MovieSchema;
// [xtask] schema exports

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `/health` and `/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthStatus {
    /// `ok`, or what is wrong.
    #[schema(example = "ok")]
    pub status: String,
}

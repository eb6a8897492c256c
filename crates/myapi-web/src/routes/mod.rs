//! One module per service, each exposing `configure` to mount its scope. To add a service,
//! add a module here, call its `configure` from [`configure`], and list its handlers in
//! [`crate::openapi::ApiDoc`].

pub mod auth;
pub mod health;
pub mod movies;

use actix_web::web;

/// Mounts every API route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    auth::configure(cfg);
    movies::configure(cfg);
}

//! One module per service, each mounting its handlers with `configure`.
//!
//! A handler is declared once: the actix attribute (`#[get("/new")]`) routes it, and
//! `#[utoipa::path]` above it reads that same attribute for the OpenAPI document, so the
//! two cannot drift apart. Requests no route takes get 404, or 405 with `Allow` when the
//! path is served with other methods ([`unrouted`]).

pub mod audit;
pub mod auth;
pub mod health;
pub mod movies;
// [xtask] route modules

use std::sync::Arc;

use actix_web::dev::ResourceDef;
use actix_web::{HttpRequest, Route, web};
use myapi_services::ServiceError;
use utoipa::openapi::OpenApi;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

/// Mounts every service's routes.
pub fn configure(cfg: &mut ServiceConfig) {
    health::configure(cfg);
    auth::configure(cfg);
    movies::configure(cfg);
    audit::configure(cfg);
    // [xtask] route scopes
}

/// The answer for a request no route took: 405 with `Allow` when its path is served with
/// other methods, else 404. Built from the document, which lists exactly what is mounted.
pub fn unrouted(api: &OpenApi) -> Route {
    let served: Arc<[(ResourceDef, String)]> = api
        .paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods = [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("OPTIONS", &item.options),
                ("HEAD", &item.head),
                ("PATCH", &item.patch),
                ("TRACE", &item.trace),
            ];
            let allow: Vec<&str> = methods
                .iter()
                .filter(|(_, operation)| operation.is_some())
                .map(|(method, _)| *method)
                .collect();
            (ResourceDef::new(path.as_str()), allow.join(", "))
        })
        .collect();
    web::to(move |req: HttpRequest| {
        // A literal path beats a template: `/movies/new` is not `/movies/{movie_id}`.
        let allow = served
            .iter()
            .filter(|(resource, _)| resource.is_match(req.path()))
            .min_by_key(|(resource, _)| resource.pattern().unwrap_or("").matches('{').count())
            .map(|(_, allow)| allow.clone());
        async move {
            Err::<(), _>(match allow {
                Some(allow) => ApiError::MethodNotAllowed { allow },
                None => ServiceError::NotFound("no such resource".into()).into(),
            })
        }
    })
}

//! The `/__NAME__` routes, each requiring the `__NAME__:read` scope.

use actix_web::{HttpRequest, HttpResponse, get, web};
use myapi_schemas::{Problem, __TYPE__Schema};
use myapi_services::__NAME__::{PAGE_SIZES, __TYPE__Id};
use myapi_services::{ServiceError, Services};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::blocking::block;
use crate::error::ApiError;
use crate::extract::{Authorized, __SCOPE_MARKER__};
use crate::openapi::GuardedErrors;
use crate::query::{self, integer, query_pairs};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        scope("/__NAME__")
            .service(list___NAME__)
            .service(get___SINGULAR__),
    );
}

/// One page of `__NAME__`, ordered by id.
#[utoipa::path(
    tag = "__NAME__",
    security(("oauth2" = ["__NAME__:read"])),
    params(
        ("limit" = Option<i64>, Query, description = "Page size (default 100)", minimum = 1, maximum = 1000),
        ("offset" = Option<i64>, Query, description = "Rows to skip (default 0)", minimum = 0, maximum = 1_000_000_000),
    ),
    responses(
        (status = 200, description = "One page", body = Vec<__TYPE__Schema>),
        (status = 422, description = "A malformed or out-of-range parameter", body = Problem, content_type = "application/problem+json"),
        GuardedErrors,
    ),
)]
#[get("/")]
pub async fn list___NAME__(
    _user: Authorized<__SCOPE_MARKER__>,
    req: HttpRequest,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let page = query::page(&query_pairs(&req)?, PAGE_SIZES)?;
    let page = block(move || services.__NAME__.list(page)).await??;
    Ok(HttpResponse::Ok().json(page))
}

/// One by id.
#[utoipa::path(
    tag = "__NAME__",
    security(("oauth2" = ["__NAME__:read"])),
    params(("__ID__" = i64, Path, description = "Id", minimum = 1)),
    responses(
        (status = 200, description = "Found", body = __TYPE__Schema),
        (status = 404, description = "No such id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Non-integer `__ID__`", body = Problem, content_type = "application/problem+json"),
        GuardedErrors,
    ),
)]
#[get("/{__ID__}")]
pub async fn get___SINGULAR__(
    _user: Authorized<__SCOPE_MARKER__>,
    id: web::Path<String>,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let id = integer("__ID__", &id, i64::MIN..=i64::MAX).map_err(ServiceError::from)?;
    let found = block(move || services.__NAME__.get(__TYPE__Id(id))).await??;
    Ok(HttpResponse::Ok().json(found))
}

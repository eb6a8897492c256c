//! Liveness and readiness probes (public).

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use myapi_schemas::HealthStatus;
use myapi_services::Services;

use crate::error::ApiError;
use crate::routes::ApiScope;

/// Mounts `/health` and `/ready`.
pub fn configure(scopes: &mut Vec<ApiScope>) {
    scopes.push(
        ApiScope::new("")
            .route(Method::GET, "/health", health)
            .route(Method::GET, "/ready", ready),
    );
}

/// Liveness: the process serves HTTP. Never touches the database.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses((status = 200, description = "The process is up", body = HealthStatus)),
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthStatus {
        status: "ok".into(),
    })
}

/// Readiness: the database answers and every migration is applied.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = HealthStatus),
        (status = 503, description = "Database unreachable or migrations pending", body = myapi_schemas::Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
pub async fn ready(services: web::Data<Services>) -> Result<HttpResponse, ApiError> {
    web::block(move || services.database.check_ready()).await??;
    Ok(HttpResponse::Ok().json(HealthStatus {
        status: "ok".into(),
    }))
}

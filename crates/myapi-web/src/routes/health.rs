//! Liveness and readiness probes (public).

use actix_web::web::ThinData;
use actix_web::{HttpResponse, get, web};
use myapi_schemas::HealthStatus;
use myapi_services::Services;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::blocking::block;
use crate::error::ApiError;
use crate::lifecycle::Stopping;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health).service(ready);
}

/// Liveness: the process serves HTTP. Never touches the database.
#[utoipa::path(
    tag = "health",
    responses((status = 200, description = "The process is up", body = HealthStatus)),
)]
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthStatus {
        status: "ok".into(),
    })
}

/// Readiness: not stopping, the database answers and every migration is applied.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = HealthStatus),
        (status = 503, description = "Stopping (draining after SIGTERM), database unreachable or migrations pending", body = myapi_schemas::Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
#[get("/ready")]
pub async fn ready(
    services: web::Data<Services>,
    stopping: ThinData<Stopping>,
) -> Result<HttpResponse, ApiError> {
    if stopping.is_stopping() {
        return Err(ApiError::Stopping);
    }
    block(move || services.database.check_ready()).await??;
    Ok(HttpResponse::Ok().json(HealthStatus {
        status: "ok".into(),
    }))
}

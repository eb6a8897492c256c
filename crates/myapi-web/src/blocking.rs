//! Blocking work from a handler, run as the handler's request.

use actix_web::error::BlockingError;
use actix_web::web;
use myapi_services::request_context;

/// `web::block`, run as the current request ([`request_context::carried`]), so what the
/// work logs names the request. Use it for every blocking service call from a handler.
pub async fn block<F, R>(work: F) -> Result<R, BlockingError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    web::block(request_context::carried(work)).await
}

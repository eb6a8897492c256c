//! Blocking work from a handler, run as the handler's request.

use actix_web::error::BlockingError;
use actix_web::web;
use myapi_services::request_context;

/// `web::block`, with the current request id carried onto the blocking thread, so what the
/// work logs names the request. Use it for every blocking service call from a handler.
pub async fn block<F, R>(work: F) -> Result<R, BlockingError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let request = request_context::current();
    web::block(move || request_context::scope(request, work)).await
}

//! Request ids, and the finishing pass that turns every error response — including
//! actix's own rejections (unknown route, bad payload, …) — into problem+json.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, Next};
use actix_web::{HttpMessage, ResponseError};

use crate::error::{ApiError, PROBLEM_JSON, TokenError, problem_json};

/// Response header carrying the request id (also in the access log and in 500 bodies).
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, stored in the request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(1);

/// Gives each request an id (`<process>-<counter>`) and echoes it in `x-request-id`.
pub async fn assign_request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = format!(
        "{:x}-{:x}",
        std::process::id(),
        NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed)
    );
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}

/// The header budget from `server.max_header_bytes`, registered as app data.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimit(pub usize);

/// Refuses requests whose headers (names and values) exceed [`HeaderLimit`] with 431.
/// actix itself caps a request head at 96 headers and 128 KiB; this makes the budget a setting.
pub async fn limit_header_size(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let limit = req
        .app_data::<HeaderLimit>()
        .map_or(usize::MAX, |limit| limit.0);
    let size: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > limit {
        let response = ApiError::HeadersTooLarge { limit }.error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// Makes every error response problem+json: bodies the app already wrote as JSON pass
/// through; actix's plain-text rejections are replaced. A 500 is logged with its whole
/// cause chain and the request id, and its body names only the request id.
pub fn finish_errors<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let status = res.status();
    let request_id = res
        .request()
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone());
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        let cause = res.response().error().map_or_else(
            || "unknown".into(),
            |error| match (error.as_error::<ApiError>(), error.as_error::<TokenError>()) {
                (Some(error), _) => myapi_services::error_chain(error),
                (_, Some(error)) => myapi_services::error_chain(error),
                _ => error.to_string(),
            },
        );
        log::error!(
            "request {} failed: {cause}",
            request_id.as_deref().unwrap_or("-")
        );
        let body = problem_json(
            status,
            "internal server error".into(),
            request_id,
            Vec::new(),
        );
        return Ok(ErrorHandlerResponse::Response(replace_body(res, body)));
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with(PROBLEM_JSON));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let detail = match res.response().error() {
        Some(error) if status.is_client_error() => rejection_detail(status, &error.to_string()),
        _ => rejection_detail(status, ""),
    };
    let body = problem_json(status, detail, None, Vec::new());
    Ok(ErrorHandlerResponse::Response(replace_body(res, body)))
}

/// A short, safe explanation of an actix rejection.
fn rejection_detail(status: StatusCode, cause: &str) -> String {
    match status {
        StatusCode::NOT_FOUND => "no such resource".into(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this resource".into(),
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large".into(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported content type".into(),
        _ if !cause.is_empty() => cause.chars().take(200).collect(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    }
}

fn replace_body<B>(
    res: ServiceResponse<B>,
    body: String,
) -> ServiceResponse<EitherBody<B, BoxBody>> {
    let (req, mut response) = res.into_parts();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    let response = response.set_body(body).map_into_boxed_body();
    ServiceResponse::new(req, response).map_into_right_body()
}

#[cfg(test)]
mod tests {
    use actix_web::middleware::{ErrorHandlers, from_fn};
    use actix_web::{App, HttpResponse, test, web};
    use myapi_services::ServiceError;

    use super::*;

    #[actix_web::test]
    async fn internal_errors_get_a_generic_body_with_the_request_id() {
        let app = test::init_service(
            App::new()
                .route(
                    "/boom",
                    web::get().to(|| async {
                        Err::<HttpResponse, ApiError>(
                            ServiceError::internal(
                                "query failed",
                                "SELECT hashed_password FROM users",
                            )
                            .into(),
                        )
                    }),
                )
                .wrap(ErrorHandlers::new().default_handler(finish_errors))
                .wrap(from_fn(assign_request_id)),
        )
        .await;
        let response =
            test::call_service(&app, test::TestRequest::get().uri("/boom").to_request()).await;
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            PROBLEM_JSON
        );
        let request_id = response
            .headers()
            .get(REQUEST_ID_HEADER)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let body: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(body["request_id"], request_id.as_str());
        assert_eq!(body["detail"], "internal server error");
        assert!(!body.to_string().contains("SELECT"));
    }

    #[actix_web::test]
    async fn plain_text_rejections_become_problem_json() {
        let app = test::init_service(
            App::new()
                .route(
                    "/json",
                    web::post().to(|_: web::Json<serde_json::Value>| async {
                        HttpResponse::Ok().finish()
                    }),
                )
                .wrap(ErrorHandlers::new().default_handler(finish_errors)),
        )
        .await;
        let request = test::TestRequest::post()
            .uri("/json")
            .insert_header((header::CONTENT_TYPE, "text/plain"))
            .set_payload("x")
            .to_request();
        let response = test::call_service(&app, request).await;
        assert!(response.status().is_client_error());
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            PROBLEM_JSON
        );
        let status = response.status().as_u16();
        let body: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(body["status"], status);
    }
}

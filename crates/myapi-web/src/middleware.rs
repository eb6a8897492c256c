//! The observing middleware ([`observe`]: request id, metrics, access log), and the
//! finishing pass that turns every error response — including actix's own rejections
//! (unknown route, bad payload, …) — into problem+json.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode, Uri, Version};
use actix_web::middleware::{ErrorHandlerResponse, Next};
use actix_web::{HttpMessage, ResponseError};
use myapi_services::request_context::{self, InRequest};

pub use crate::client::REQUEST_ID_HEADER;
use crate::client::{TrustedProxies, forwarded_request_id};
use crate::error::{ApiError, PROBLEM_JSON, TokenError, problem_json};
use crate::extract::client_ip;
use crate::metrics;

/// The target of the access lines, one per request (`RUST_LOG=myapi_web::access=warn`
/// silences them).
pub const ACCESS_TARGET: &str = "myapi_web::access";

/// The id of the request being served, stored in the request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// Wraps every request, outermost:
/// - gives it an id: a trusted proxy's `X-Request-Id` ([`forwarded_request_id`]), else a
///   fresh UUID; echoed in `X-Request-Id` on the response;
/// - makes that id the current request while the request's future is polled, so every line
///   it logs names it ([`request_context`]);
/// - records the HTTP metrics (when enabled) and writes the access line.
///
/// Durations end when the response head is ready, not when the body is sent: every body
/// this API writes is in memory by then.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let forwarded = match (req.peer_addr(), req.app_data::<TrustedProxies>()) {
        (Some(peer), Some(trusted)) => forwarded_request_id(peer.ip(), req.headers(), trusted),
        _ => None,
    };
    let id: Arc<str> = forwarded.map_or_else(|| request_context::new_id().into(), Into::into);
    req.extensions_mut().insert(RequestId(Arc::clone(&id)));
    // What the access line needs is taken now: the request cannot be cloned before it is
    // routed, and a failed middleware below returns no request.
    let logged = log::log_enabled!(target: ACCESS_TARGET, log::Level::Info).then(|| Logged {
        client: client_ip(req.request()),
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
    });
    let active = metrics::recording().then(|| ActiveRequest::start(req.method()));
    let header = HeaderValue::from_str(&id).ok();
    let result = InRequest::new(Arc::clone(&id), next.call(req)).await;
    let elapsed = started.elapsed();
    let (status, route, bytes) = match &result {
        Ok(response) => (
            response.status(),
            response.request().match_pattern().unwrap_or_default(),
            response.response().body().size(),
        ),
        // Rare: a middleware failed instead of answering; actix answers with the error.
        Err(error) => (
            error.as_response_error().status_code(),
            String::new(),
            BodySize::Stream,
        ),
    };
    if let Some(logged) = logged {
        logged.write(&id, &route, status, bytes, elapsed);
    }
    if let Some(active) = active {
        active.finish(route, status, elapsed.as_secs_f64());
    }
    match (result, header) {
        (Ok(mut response), Some(header)) => {
            response.headers_mut().insert(REQUEST_ID_HEADER, header);
            Ok(response)
        }
        (Err(error), Some(header)) => {
            let mut answer = error.error_response();
            answer.headers_mut().insert(REQUEST_ID_HEADER, header);
            Err(InternalError::from_response(error, answer).into())
        }
        (result, None) => result,
    }
}

/// The parts of a request its access line shows.
struct Logged {
    client: IpAddr,
    method: Method,
    uri: Uri,
    version: Version,
}

impl Logged {
    /// The access line: readable text as its message, and each part as a key-value for JSON
    /// (`request_id` is [`crate::logging::REQUEST_ID_KEY`]). Never headers or bodies, so no
    /// token or password reaches the log.
    fn write(&self, id: &str, route: &str, status: StatusCode, bytes: BodySize, elapsed: Duration) {
        let client = self.client.to_string();
        let method = self.method.as_str();
        let target = self
            .uri
            .path_and_query()
            .map_or("/", |target| target.as_str());
        let bytes = match bytes {
            BodySize::Sized(bytes) => bytes.to_string(),
            BodySize::None | BodySize::Stream => "-".into(),
        };
        let duration_ms = elapsed.as_micros() as f64 / 1000.0;
        log::info!(
            target: ACCESS_TARGET,
            request_id = id, method = method, route = route, status = status.as_u16(),
            duration_ms = duration_ms, client_ip = client.as_str();
            "{client} \"{method} {target} {:?}\" {} {bytes} {:.6}s id={id}",
            self.version,
            status.as_u16(),
            elapsed.as_secs_f64(),
        );
    }
}

/// One request counted in `http_server_active_requests` until it is finished or dropped
/// (a client that disconnects drops its request's future).
struct ActiveRequest {
    method: &'static str,
}

impl ActiveRequest {
    fn start(method: &Method) -> Self {
        let method = metrics::method_label(method);
        ::metrics::gauge!(metrics::ACTIVE_REQUESTS, "http_request_method" => method).increment(1.0);
        Self { method }
    }

    fn finish(self, route: String, status: StatusCode, seconds: f64) {
        ::metrics::histogram!(
            metrics::REQUEST_DURATION,
            "http_request_method" => self.method,
            "http_route" => route,
            "http_response_status_code" => status.as_str().to_owned(),
        )
        .record(seconds);
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::ACTIVE_REQUESTS, "http_request_method" => self.method)
            .decrement(1.0);
    }
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

/// The Content-Security-Policy of Swagger UI's pages. Its page loads every script and
/// stylesheet from files of its own (no inline script; the styles it sets at run time go
/// through the DOM, which CSP does not govern), so `'self'` covers them, plus one hash: the
/// `<style>` element of the logo in its top bar (`.logo_small_svg__cls-2{fill:#fff}…`, from
/// the vendored `swagger-ui-standalone-preset.js`). Images include the `data:` URIs its CSS
/// uses; it fetches the OpenAPI document and calls the API on this origin only, and is never
/// framed. The browser test fails on any violation, so a Swagger UI upgrade that changes
/// the logo's style shows there.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// Sets [`DOCS_CONTENT_SECURITY_POLICY`] on every response under `/docs/`, and on no other:
/// the API answers JSON, which no browser renders as a page.
pub async fn docs_security_policy(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let docs = req.path().starts_with("/docs/");
    let mut response = next.call(req).await?;
    if docs {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DOCS_CONTENT_SECURITY_POLICY),
        );
    }
    Ok(response)
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
        .map(|id| id.0.to_string());
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
            0,
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
    let body = problem_json(status, detail, None, Vec::new(), 0);
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
                .wrap(from_fn(observe)),
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

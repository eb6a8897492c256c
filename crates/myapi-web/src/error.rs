//! The one place where errors become HTTP responses.
//!
//! Every error is RFC 9457 `application/problem+json`, except `/token`'s, which follow
//! RFC 6749 §5.2. Internal causes are never sent to clients: a 500 gets a generic body, and
//! [`crate::middleware::finish_errors`] logs the cause with the request id.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use myapi_schemas::{FieldError, OAuthErrorResponse, Problem};
use myapi_services::ServiceError;

/// Media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error as the web tier reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A service error on an ordinary route.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A protected route was called without credentials (RFC 6750 §3.1: no error code).
    #[error("missing bearer token")]
    MissingCredentials,
    /// A `/token` error, reported the RFC 6749 way.
    #[error("token request failed: {0}")]
    Token(TokenError),
}

/// The errors of `POST /token` (RFC 6749 §5.2, plus throttling and overload).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Malformed request: not a form, missing, empty or repeated fields.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// The form is larger than `/token` accepts.
    #[error("invalid_request: body too large")]
    BodyTooLarge,
    /// `grant_type` other than `password`.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// Anything the auth service refused.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        Self::Token(error)
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        Self::Service(ServiceError::Internal("blocking task was cancelled".into()))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Service(error) => service_status(error),
            Self::MissingCredentials => StatusCode::UNAUTHORIZED,
            Self::Token(TokenError::InvalidRequest(_) | TokenError::UnsupportedGrantType) => {
                StatusCode::BAD_REQUEST
            }
            Self::Token(TokenError::Service(
                ServiceError::InvalidCredentials | ServiceError::Invalid(_),
            )) => StatusCode::BAD_REQUEST,
            Self::Token(TokenError::BodyTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Token(TokenError::Service(error)) => service_status(error),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if let Some(secs) = retry_after(self) {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        match self {
            Self::MissingCredentials => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
                problem_body(
                    &mut response,
                    status,
                    "a bearer token is required".into(),
                    Vec::new(),
                )
            }
            Self::Service(error @ ServiceError::InvalidToken(_)) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                ));
                problem_body(&mut response, status, error.to_string(), Vec::new())
            }
            Self::Service(error) => {
                let fields = match error {
                    ServiceError::Invalid(fields) => fields
                        .iter()
                        .map(|f| FieldError {
                            field: f.field.clone(),
                            message: f.message.clone(),
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                problem_body(&mut response, status, client_detail(error), fields)
            }
            Self::Token(error) => {
                let (code, description) = match error {
                    TokenError::InvalidRequest(why) => ("invalid_request", why.clone()),
                    TokenError::BodyTooLarge => {
                        ("invalid_request", "request body too large".into())
                    }
                    TokenError::UnsupportedGrantType => (
                        "unsupported_grant_type",
                        "grant_type must be `password`".into(),
                    ),
                    TokenError::Service(ServiceError::InvalidCredentials) => (
                        "invalid_grant",
                        ServiceError::InvalidCredentials.to_string(),
                    ),
                    TokenError::Service(ServiceError::Invalid(_)) => {
                        ("invalid_request", error.to_string())
                    }
                    TokenError::Service(ServiceError::TooManyAttempts { .. }) => {
                        ("slow_down", error.to_string())
                    }
                    TokenError::Service(
                        e @ (ServiceError::Busy { .. } | ServiceError::Unavailable(_)),
                    ) => ("temporarily_unavailable", client_detail(e)),
                    TokenError::Service(e) => ("server_error", client_detail(e)),
                };
                response
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .insert_header((header::PRAGMA, "no-cache"))
                    .json(OAuthErrorResponse {
                        error: code.into(),
                        error_description: description,
                    })
            }
        }
    }
}

fn service_status(error: &ServiceError) -> StatusCode {
    match error {
        ServiceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::Conflict(_) => StatusCode::CONFLICT,
        ServiceError::InvalidCredentials | ServiceError::InvalidToken(_) => {
            StatusCode::UNAUTHORIZED
        }
        ServiceError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
        ServiceError::Busy { .. } | ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Seconds for `Retry-After`, when the client should come back later.
fn retry_after(error: &ApiError) -> Option<u64> {
    let service_error = match error {
        ApiError::Service(e) | ApiError::Token(TokenError::Service(e)) => e,
        _ => return None,
    };
    match service_error {
        ServiceError::TooManyAttempts { retry_after_secs }
        | ServiceError::Busy { retry_after_secs } => Some(*retry_after_secs),
        ServiceError::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER_SECS),
        _ => None,
    }
}

/// `Retry-After` sent while the database is unreachable.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// What a client may be told: internal and database details stay in the log.
fn client_detail(error: &ServiceError) -> String {
    match error {
        ServiceError::Unavailable(_) => "the database is unavailable; try again shortly".into(),
        ServiceError::Internal(_) => "internal server error".into(),
        other => other.to_string(),
    }
}

fn problem_body(
    response: &mut actix_web::HttpResponseBuilder,
    status: StatusCode,
    detail: String,
    errors: Vec<FieldError>,
) -> HttpResponse {
    response
        .content_type(PROBLEM_JSON)
        .body(problem_json(status, detail, None, errors))
}

/// Serialises a problem document for `status`.
pub fn problem_json(
    status: StatusCode,
    detail: String,
    request_id: Option<String>,
    errors: Vec<FieldError>,
) -> String {
    let problem = Problem {
        problem_type: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail,
        request_id,
        errors,
    };
    serde_json::to_string(&problem)
        .unwrap_or_else(|_| format!(r#"{{"status":{}}}"#, status.as_u16()))
}

//! The one place where errors become HTTP responses.
//!
//! Every error is RFC 9457 `application/problem+json` ([`ApiError`]), except `/token`'s,
//! which follow RFC 6749 §5.2 ([`TokenError`]). Causes never reach clients: a 500 gets a
//! generic body, and [`crate::middleware::finish_errors`] logs the cause chain with the
//! request id.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use myapi_schemas::{FieldError, OAuthErrorResponse, Problem};
use myapi_services::auth::LoginError;
use myapi_services::{InvalidField, ServiceError};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// `Retry-After` sent while the database is unreachable, or by `/ready` while the instance
/// stops.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// Most offending fields a 422 names, in `errors` and in `detail`; the rest are counted in
/// `more_errors`. Without a cap, a body of many short unknown members would be answered
/// with many times its size.
pub const MAX_LISTED_ERRORS: usize = 20;

/// An error on any route but `/token`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A protected route was called without credentials (RFC 6750 §3.1: no error code).
    #[error("a bearer token is required")]
    MissingCredentials,
    /// The token is valid but lacks the route's scope (RFC 6750 §3.1).
    #[error("the token lacks the scope `{scope}`")]
    InsufficientScope { scope: &'static str },
    /// The body is not JSON (or not UTF-8): 400.
    #[error("the body is not valid JSON: {0}")]
    MalformedBody(String),
    /// The body's `Content-Type` is not the one the route reads; a PATCH answers with
    /// `Accept-Patch` naming it (RFC 5789 §2.2).
    #[error("the body must be {expected}")]
    UnsupportedMediaType {
        expected: &'static str,
        accept_patch: bool,
    },
    /// The path exists, served with other methods (listed in `Allow`).
    #[error("allowed methods: {allow}")]
    MethodNotAllowed { allow: String },
    /// A header the route reads is not in its grammar: 400.
    #[error("the {name} header {reason}")]
    MalformedHeader { name: &'static str, reason: String },
    #[error("request headers exceed {limit} bytes")]
    HeadersTooLarge { limit: usize },
    /// `/ready` once a stop has begun (while the instance drains, and after).
    #[error("this instance is stopping")]
    Stopping,
    /// The caller's bucket for the route's class is empty ([`crate::rate_limit`]).
    #[error("too many {class} requests; retry in {retry_after_secs} s")]
    RateLimited {
        class: &'static str,
        retry_after_secs: u64,
    },
    /// `POST /users/` while `auth.registration` is `closed`.
    #[error("registration is closed: an administrator creates accounts")]
    RegistrationClosed,
    /// `/password-reset` while `auth.password_reset` is `off`.
    #[error("password reset is off: ask an administrator")]
    PasswordResetOff,
    /// A mail's single-use token that is no good; which way is not told.
    #[error("the token is not valid: it was used, has expired, or a newer one replaced it")]
    AccountToken,
    /// A password check outside `/token` (the current password of a change) refused, or
    /// asked to wait, as a login would be.
    #[error("{}", password_refusal(.0))]
    Password(LoginError),
}

/// What a refused password check tells the client.
fn password_refusal(error: &LoginError) -> String {
    match error {
        LoginError::InvalidGrant => "`current_password` is not the account's password".into(),
        LoginError::Throttled { retry_after_secs } => {
            format!(
                "too many attempts from this network or for this account; retry in {retry_after_secs} s"
            )
        }
        LoginError::Saturated { .. } => "every password hashing thread is busy".into(),
        other => other.to_string(),
    }
}

impl From<LoginError> for ApiError {
    /// The errors of a password check as a route other than `/token` answers them; the
    /// rest are the service errors they wrap.
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::Service(error) => Self::Service(error),
            refused => Self::Password(refused),
        }
    }
}

/// The errors of `POST /token`, answered per RFC 6749 §5.2.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a form, or missing, empty or repeated fields.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("request body too large")]
    BodyTooLarge,
    #[error("grant_type must be `password` or `refresh_token`")]
    UnsupportedGrantType,
    #[error(transparent)]
    Login(#[from] LoginError),
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(error: actix_web::error::BlockingError) -> Self {
        Self::Service(ServiceError::internal(
            "blocking task failed",
            error.to_string(),
        ))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Service(error) => match error {
                ServiceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
                ServiceError::Conflict(_) => StatusCode::CONFLICT,
                ServiceError::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
                ServiceError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
                ServiceError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
                ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                ServiceError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::MissingCredentials => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::MalformedBody(_) | Self::MalformedHeader { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Stopping => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::RegistrationClosed | Self::PasswordResetOff => StatusCode::FORBIDDEN,
            Self::AccountToken => StatusCode::BAD_REQUEST,
            Self::Password(refused) => match refused {
                LoginError::InvalidGrant => StatusCode::FORBIDDEN,
                LoginError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
                LoginError::Saturated { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        let mut fields = Vec::new();
        let mut more_errors = 0;
        match self {
            Self::MissingCredentials => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Self::InsufficientScope { scope } => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(r#"Bearer error="insufficient_scope", scope="{scope}""#),
                ));
            }
            Self::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, allow.as_str()));
            }
            Self::UnsupportedMediaType {
                expected,
                accept_patch: true,
            } => {
                response.insert_header(("accept-patch", *expected));
            }
            Self::Service(ServiceError::InvalidToken(_)) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                ));
            }
            Self::Service(ServiceError::Unavailable(_)) | Self::Stopping => {
                retry_after(&mut response, UNAVAILABLE_RETRY_AFTER_SECS);
            }
            Self::RateLimited {
                retry_after_secs, ..
            }
            | Self::Password(
                LoginError::Throttled { retry_after_secs }
                | LoginError::Saturated { retry_after_secs },
            ) => retry_after(&mut response, *retry_after_secs),
            Self::Service(ServiceError::Invalid(invalid)) => {
                let listed;
                (listed, more_errors) = listed_fields(invalid);
                fields = listed
                    .into_iter()
                    .map(|f| FieldError {
                        field: f.field,
                        message: f.message,
                    })
                    .collect();
            }
            Self::Service(_)
            | Self::Password(_)
            | Self::RegistrationClosed
            | Self::PasswordResetOff
            | Self::AccountToken
            | Self::HeadersTooLarge { .. }
            | Self::MalformedBody(_)
            | Self::MalformedHeader { .. }
            | Self::UnsupportedMediaType { .. } => {}
        }
        let detail = match self {
            Self::Service(error) => client_detail(error),
            other => other.to_string(),
        };
        response.content_type(PROBLEM_JSON).body(problem_json(
            status,
            detail,
            None,
            fields,
            more_errors,
        ))
    }
}

impl TokenError {
    /// The RFC 6749 error code, the status, and `Retry-After` when the client should come
    /// back later.
    fn oauth(&self) -> (&'static str, StatusCode, Option<u64>) {
        match self {
            Self::InvalidRequest(_) => ("invalid_request", StatusCode::BAD_REQUEST, None),
            Self::BodyTooLarge => ("invalid_request", StatusCode::PAYLOAD_TOO_LARGE, None),
            Self::UnsupportedGrantType => ("unsupported_grant_type", StatusCode::BAD_REQUEST, None),
            Self::Login(error) => match error {
                LoginError::InvalidGrant | LoginError::Unverified => {
                    ("invalid_grant", StatusCode::BAD_REQUEST, None)
                }
                LoginError::InvalidRequest(_) => ("invalid_request", StatusCode::BAD_REQUEST, None),
                LoginError::InvalidScope(_) => ("invalid_scope", StatusCode::BAD_REQUEST, None),
                LoginError::InvalidRefreshToken => ("invalid_grant", StatusCode::BAD_REQUEST, None),
                LoginError::InvalidClient(_) => ("invalid_client", StatusCode::BAD_REQUEST, None),
                LoginError::UnsupportedTokenType => {
                    ("unsupported_token_type", StatusCode::BAD_REQUEST, None)
                }
                LoginError::Throttled { retry_after_secs } => (
                    "slow_down",
                    StatusCode::TOO_MANY_REQUESTS,
                    Some(*retry_after_secs),
                ),
                LoginError::Saturated { retry_after_secs } => (
                    "temporarily_unavailable",
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(*retry_after_secs),
                ),
                LoginError::Service(ServiceError::Invalid(_)) => {
                    ("invalid_request", StatusCode::BAD_REQUEST, None)
                }
                LoginError::Service(ServiceError::Unavailable(_)) => (
                    "temporarily_unavailable",
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(UNAVAILABLE_RETRY_AFTER_SECS),
                ),
                LoginError::Service(_) => ("server_error", StatusCode::INTERNAL_SERVER_ERROR, None),
            },
        }
    }
}

impl TokenError {
    /// The kind of answer, as `myapi_login_attempts_total` counts it: the RFC 6749 code,
    /// except that the three ways of being asked to come back later are told apart.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Login(LoginError::Throttled { .. }) => "throttled",
            Self::Login(LoginError::Saturated { .. }) => "saturated",
            Self::Login(LoginError::Service(ServiceError::Unavailable(_))) => "unavailable",
            _ => self.oauth().0,
        }
    }
}

/// The outcome label of one `/token` answer: `success`, or the kind of error.
pub fn login_outcome<T>(answer: &Result<T, TokenError>) -> &'static str {
    answer
        .as_ref()
        .map_or_else(TokenError::outcome, |_| "success")
}

impl ResponseError for TokenError {
    fn status_code(&self) -> StatusCode {
        self.oauth().1
    }

    fn error_response(&self) -> HttpResponse {
        let (code, status, retry) = self.oauth();
        let mut response = HttpResponse::build(status);
        if let Some(secs) = retry {
            retry_after(&mut response, secs);
        }
        let description = match self {
            Self::Login(LoginError::Service(error)) => client_detail(error),
            other => other.to_string(),
        };
        response
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(OAuthErrorResponse {
                error: code.into(),
                error_description: error_description(&description),
            })
    }
}

/// Longest `error_description`, in bytes (all ASCII).
pub const MAX_ERROR_DESCRIPTION_LEN: usize = 200;

/// `text` as an RFC 6749 §5.2 `error_description` may carry it: only `%x20-21 / %x23-5B /
/// %x5D-7E` (printable ASCII but `"` and `\`), each other character replaced by `?`, and at
/// most [`MAX_ERROR_DESCRIPTION_LEN`] bytes, a cut one ending in `...`. Descriptions echo
/// request input (an unknown scope), so every one goes through here.
pub fn error_description(text: &str) -> String {
    let allowed = |c: char| matches!(c, '\x20'..='\x7e') && c != '"' && c != '\\';
    let mut description: String = text
        .chars()
        .map(|c| if allowed(c) { c } else { '?' })
        .take(MAX_ERROR_DESCRIPTION_LEN + 1)
        .collect();
    if description.len() > MAX_ERROR_DESCRIPTION_LEN {
        description.truncate(MAX_ERROR_DESCRIPTION_LEN - 3);
        description.push_str("...");
    }
    description
}

fn retry_after(response: &mut HttpResponseBuilder, secs: u64) {
    response.insert_header((header::RETRY_AFTER, secs.to_string()));
}

/// What a client may be told: internal and database details stay in the log, and invalid
/// fields past [`MAX_LISTED_ERRORS`] are counted, not named.
/// Longest field name or message a 422 repeats, in characters: both may echo what the
/// client sent (an unknown member's name), and the answer must stay small.
const MAX_ECHOED_CHARS: usize = 100;

/// The offending fields a 422 lists (at most [`MAX_LISTED_ERRORS`], each name and message
/// cut at [`MAX_ECHOED_CHARS`], ending `...` when cut), and how many more there were.
fn listed_fields(invalid: &[InvalidField]) -> (Vec<InvalidField>, usize) {
    let clip = |text: &str| match text.char_indices().nth(MAX_ECHOED_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    };
    let listed = invalid
        .iter()
        .take(MAX_LISTED_ERRORS)
        .map(|f| InvalidField::new(clip(&f.field), clip(&f.message)))
        .collect();
    (listed, invalid.len().saturating_sub(MAX_LISTED_ERRORS))
}

fn client_detail(error: &ServiceError) -> String {
    match error {
        ServiceError::Invalid(invalid) => {
            let (listed, more) = listed_fields(invalid);
            let listed = ServiceError::Invalid(listed);
            if more > 0 {
                format!("{listed}; and {more} more")
            } else {
                listed.to_string()
            }
        }
        ServiceError::Unavailable(_) => "the database is unavailable; try again shortly".into(),
        ServiceError::Internal { .. } => "internal server error".into(),
        other => other.to_string(),
    }
}

/// The body of every problem+json response; `more_errors` counts the offending fields
/// `errors` leaves out.
pub fn problem_json(
    status: StatusCode,
    detail: String,
    request_id: Option<String>,
    errors: Vec<FieldError>,
    more_errors: usize,
) -> String {
    let problem = Problem {
        problem_type: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail,
        request_id,
        errors,
        more_errors: (more_errors > 0).then(|| u64::try_from(more_errors).unwrap_or(u64::MAX)),
    };
    serde_json::to_string(&problem)
        .unwrap_or_else(|_| format!(r#"{{"status":{}}}"#, status.as_u16()))
}

#[cfg(test)]
mod tests {
    use myapi_services::InvalidField;
    use proptest::prelude::*;

    use super::*;

    fn is_rfc_6749_description(text: &str) -> bool {
        text.bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
    }

    #[test]
    fn error_descriptions_keep_only_what_rfc_6749_allows() {
        let long = "x".repeat(MAX_ERROR_DESCRIPTION_LEN + 1);
        let fits = "y".repeat(MAX_ERROR_DESCRIPTION_LEN);
        let cut = format!("{}...", "x".repeat(MAX_ERROR_DESCRIPTION_LEN - 3));
        for (text, expected) in [
            ("", ""),
            ("unknown scope `a:b`", "unknown scope `a:b`"),
            (
                r#"unknown scope `movies:ünknown"\x`"#,
                "unknown scope `movies:?nknown??x`",
            ),
            ("tab\there\r\n\u{0}\u{7f}", "tab?here????"),
            ("\u{1F600}\u{200B}\u{FEFF}", "???"),
            ("!#[]~ ", "!#[]~ "),
            (long.as_str(), cut.as_str()),
            (fits.as_str(), fits.as_str()),
        ] {
            assert_eq!(error_description(text), expected, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn any_text_becomes_a_valid_error_description(text in any::<String>()) {
            let description = error_description(&text);
            prop_assert!(is_rfc_6749_description(&description), "{description:?}");
            prop_assert!(description.len() <= MAX_ERROR_DESCRIPTION_LEN);
            if is_rfc_6749_description(&text) && text.len() <= MAX_ERROR_DESCRIPTION_LEN {
                prop_assert_eq!(description, text);
            }
        }

        #[test]
        fn mostly_printable_text_keeps_its_allowed_characters(text in "[ -~\\PC\\t\\x00]{0,300}") {
            let description = error_description(&text);
            prop_assert!(is_rfc_6749_description(&description), "{description:?}");
            prop_assert!(description.len() <= MAX_ERROR_DESCRIPTION_LEN);
            let kept = description.trim_end_matches("...");
            for (given, shown) in text.chars().zip(kept.chars()) {
                prop_assert!(shown == given || shown == '?', "{given:?} -> {shown:?}");
            }
        }
    }

    #[actix_web::test]
    async fn every_token_error_answers_a_valid_description() {
        let errors = [
            TokenError::InvalidRequest("field `username` \"x\\y\" é".into()),
            TokenError::Login(LoginError::InvalidScope("unknown scope `a:\u{0}\"`".into())),
            TokenError::Login(LoginError::Service(ServiceError::invalid("ü", "\"\\"))),
        ];
        for error in errors {
            let response = error.error_response();
            let body = actix_web::body::to_bytes(response.into_body())
                .await
                .unwrap();
            let answer: OAuthErrorResponse = serde_json::from_slice(&body).unwrap();
            assert!(
                is_rfc_6749_description(&answer.error_description),
                "{answer:?}"
            );
        }
    }

    #[actix_web::test]
    async fn a_422_names_fields_up_to_the_cap_and_counts_the_rest() {
        for (count, more) in [
            (1, None),
            (MAX_LISTED_ERRORS, None),
            (MAX_LISTED_ERRORS + 1, Some(1)),
        ] {
            let fields = (0..count)
                .map(|index| InvalidField::new(format!("f{index}"), "is not a field of a movie"))
                .collect();
            let response = ApiError::from(ServiceError::Invalid(fields)).error_response();
            let body = actix_web::body::to_bytes(response.into_body())
                .await
                .unwrap();
            let problem: Problem = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem.errors.len(), count.min(MAX_LISTED_ERRORS));
            assert_eq!(problem.more_errors, more);
            let named = problem.detail.matches("is not a field").count();
            assert_eq!(named, count.min(MAX_LISTED_ERRORS), "{}", problem.detail);
            assert_eq!(problem.detail.ends_with("; and 1 more"), more.is_some());
        }
    }

    #[actix_web::test]
    async fn a_422_cuts_what_it_echoes() {
        let long = "é".repeat(60_000);
        let fields = vec![InvalidField::new(
            long.clone(),
            format!("unknown field `{long}`"),
        )];
        let response = ApiError::from(ServiceError::Invalid(fields)).error_response();
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap();
        assert!(body.len() < 2_000, "{} bytes", body.len());
        let problem: Problem = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            problem.errors[0].field.chars().count(),
            MAX_ECHOED_CHARS + 3
        );
        assert!(problem.errors[0].field.ends_with("..."));
    }
}

//! The `auth` scope: `POST /token` (OAuth2 password grant) and `GET /users/me`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use myapi_schemas::{OAuthErrorResponse, TokenForm, TokenResponse, UserSchema};
use myapi_services::Services;
use myapi_services::auth::Credentials;
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::TokenError;
use crate::extract::{BearerUser, client_ip};
use crate::openapi::GuardedErrors;

/// Largest `/token` body, in bytes: a form of two fields needs far less than the 64 KiB
/// other routes accept.
pub const TOKEN_BODY_LIMIT: usize = 4 * 1024;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(token).service(scope("/users").service(me));
}

/// Exchanges email and password for an access token (RFC 6749 §4.3).
///
/// Unknown users and wrong passwords get the same answer after the same work.
#[utoipa::path(
    tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Access token issued", body = TokenResponse,
            headers(("Cache-Control" = String, description = "no-store"), ("Pragma" = String, description = "no-cache"))),
        (status = 400, description = "invalid_request, invalid_grant or unsupported_grant_type", body = OAuthErrorResponse),
        (status = 413, description = "Body larger than 4 KiB (`invalid_request`)", body = OAuthErrorResponse),
        (status = 429, description = "Too many failed logins", body = OAuthErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Hashing saturated or database unavailable", body = OAuthErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
#[post("/token")]
pub async fn token(
    req: HttpRequest,
    body: web::Payload,
    services: web::Data<Services>,
) -> Result<HttpResponse, TokenError> {
    let body = body
        .to_bytes_limited(TOKEN_BODY_LIMIT)
        .await
        .map_err(|_| TokenError::BodyTooLarge)?
        .map_err(|_| TokenError::InvalidRequest("the request body could not be read".into()))?;
    let credentials = password_grant(&req, &body)?;
    let issued = services.auth.login(credentials, client_ip(&req)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(issued))
}

/// Parses an `application/x-www-form-urlencoded` body per RFC 6749 §4.3.2: `username`
/// and `password` required and non-empty, no field repeated, `grant_type` = `password`
/// when present; `scope`, `client_id` and anything else ignored.
fn password_grant(req: &HttpRequest, body: &[u8]) -> Result<Credentials, TokenError> {
    let invalid = |why: &str| TokenError::InvalidRequest(why.into());
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(invalid("body must be application/x-www-form-urlencoded"));
    }
    let body = std::str::from_utf8(body).map_err(|_| invalid("body is not valid UTF-8"))?;
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(body).map_err(|_| invalid("body is not a valid form"))?;
    let field = |name: &str| -> Result<Option<String>, TokenError> {
        let mut values = pairs.iter().filter(|(key, _)| key == name);
        let first = values.next().map(|(_, v)| v.clone());
        if values.next().is_some() {
            return Err(TokenError::InvalidRequest(format!(
                "parameter `{name}` is repeated"
            )));
        }
        Ok(first)
    };
    for name in ["scope", "client_id", "client_secret"] {
        field(name)?;
    }
    let required = |name: &str| -> Result<String, TokenError> {
        match field(name)? {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(TokenError::InvalidRequest(format!(
                "parameter `{name}` is required"
            ))),
        }
    };
    let username = required("username")?;
    let password = required("password")?;
    match field("grant_type")?.as_deref() {
        None | Some("password") => Ok(Credentials { username, password }),
        Some("") => Err(invalid("parameter `grant_type` is empty")),
        Some(_) => Err(TokenError::UnsupportedGrantType),
    }
}

/// The signed-in user.
#[utoipa::path(
    tag = "auth",
    security(("oauth2" = [])),
    responses(
        (status = 200, description = "The token's user", body = UserSchema),
        GuardedErrors,
    ),
)]
#[get("/me")]
pub async fn me(user: BearerUser) -> HttpResponse {
    HttpResponse::Ok().json(user.0)
}

//! The `auth` scope: `POST /token` (OAuth2 password and refresh grants), `POST /revoke`
//! (RFC 7009), `POST /introspect` (RFC 7662), `GET /.well-known/jwks.json`, `GET /.well-known/oauth-authorization-server`
//! (RFC 8414), `GET /users/me` and `GET /users/`.

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, put, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use myapi_schemas::{
    AuthorizationServerMetadata, IntrospectionForm, IntrospectionResponse, JsonWebKeySet,
    OAuthErrorResponse, PasswordChange, PasswordResetConfirmation, PasswordResetRequest, Problem,
    RevokeForm, SignUpRequest, TokenRequest, TokenResponse, UserSchema, VerifyEmailRequest,
};
use myapi_services::audit::ThrottledAnswer;
use myapi_services::auth::keys::JWKS_MAX_AGE_SECS;
use myapi_services::auth::{Credentials, LoginError, SCOPES};
use myapi_services::{ServiceError, Services};
use percent_encoding::percent_decode_str;
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::blocking::block;
use crate::error::{ApiError, TokenError, login_outcome};
use crate::extract::{
    Authorized, BearerUser, TokensIntrospect, UsersRead, client_ip, has_media_type, next_page_link,
};
use crate::openapi::{GuardedErrors, JsonBodyErrors};
use crate::query::{self, query_pairs};

/// Largest `/token` and `/revoke` body, in bytes: a form of a few short fields needs far
/// less than the 64 KiB other routes accept.
pub const TOKEN_BODY_LIMIT: usize = 4 * 1024;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(token)
        .service(revoke)
        .service(introspect)
        .service(request_password_reset)
        .service(confirm_password_reset)
        .service(jwks)
        .service(metadata)
        .service(
            scope("/users")
                .service(me)
                .service(change_password)
                .service(verify_email)
                .service(sign_up)
                .service(list_users),
        );
}

/// Issues an access token and a refresh token: for an email and password (RFC 6749 §4.3),
/// or for a refresh token, which is used up (§6).
///
/// Unknown users and wrong passwords get the same answer after the same work.
#[utoipa::path(
    tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens issued", body = TokenResponse,
            headers(("Cache-Control" = String, description = "no-store"), ("Pragma" = String, description = "no-cache"))),
        (status = 400, description = "invalid_request, invalid_grant, invalid_scope, invalid_client (a client_id not in `auth.client_ids`) or unsupported_grant_type", body = OAuthErrorResponse),
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
    let client = client_ip(&req);
    let answer = issue(req, body, services.clone(), client).await;
    if crate::metrics::recording() {
        crate::metrics::count_login(login_outcome(&answer));
    }
    count_throttled(
        &services,
        &answer,
        client,
        ThrottledAnswer::TokenTooManyRequests,
    );
    answer
}

/// `/token`'s work; [`token`] counts its answer.
async fn issue(
    req: HttpRequest,
    body: web::Payload,
    services: web::Data<Services>,
    client: IpAddr,
) -> Result<HttpResponse, TokenError> {
    let form = Form::read(&req, body).await?;
    let client_id = form.client_id(&req)?;
    let issued = match form.value("grant_type")?.as_deref() {
        None | Some("password") => {
            let credentials = Credentials {
                username: form.required("username")?,
                password: form.required("password")?,
                scope: form.value("scope")?,
                client_id,
            };
            services.auth.login(credentials, client).await?
        }
        Some("refresh_token") => {
            let refresh_token = form.required("refresh_token")?;
            let scope = form.value("scope")?;
            services
                .auth
                .refresh(refresh_token, scope, client_id, client)
                .await?
        }
        Some("") => {
            return Err(TokenError::InvalidRequest(
                "parameter `grant_type` is empty".into(),
            ));
        }
        Some(_) => return Err(TokenError::UnsupportedGrantType),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(issued))
}

/// Revokes a refresh token and every token rotated from the same login (RFC 7009).
///
/// An unknown or already revoked token is answered 200 too, as the RFC requires.
#[utoipa::path(
    tag = "auth",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, description = "invalid_request, or unsupported_token_type for an access token", body = OAuthErrorResponse),
        (status = 413, description = "Body larger than 4 KiB (`invalid_request`)", body = OAuthErrorResponse),
        (status = 429, description = "Too many failed attempts", body = OAuthErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Database unavailable", body = OAuthErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
#[post("/revoke")]
pub async fn revoke(
    req: HttpRequest,
    body: web::Payload,
    services: web::Data<Services>,
) -> Result<HttpResponse, TokenError> {
    let client = client_ip(&req);
    let answer = async {
        let form = Form::read(&req, body).await?;
        form.value("token_type_hint")?;
        let presented = form.required("token")?;
        services.auth.revoke(presented, client).await?;
        Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish())
    }
    .await;
    count_throttled(
        &services,
        &answer,
        client,
        ThrottledAnswer::RevokeTooManyRequests,
    );
    answer
}

/// Whether a token is active now, and what it stands for (RFC 7662), for resource servers
/// that ask rather than verify signatures: access and refresh tokens, read from the
/// database, so a revoked session or a changed password shows at once. The caller needs
/// a token with `tokens:introspect` (admins only).
#[utoipa::path(
    tag = "auth",
    security(("oauth2" = ["tokens:introspect"])),
    request_body(content = IntrospectionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`{\"active\": false}` alone for an expired, revoked, used or unknown token", body = IntrospectionResponse,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "invalid_request: no `token`, or a malformed form", body = OAuthErrorResponse),
        (status = 403, description = "The caller's token lacks `tokens:introspect`", body = Problem,
            content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer error=\"insufficient_scope\", scope=\"tokens:introspect\"`"))),
        (status = 413, description = "Body larger than 4 KiB (`invalid_request`)", body = OAuthErrorResponse),
        GuardedErrors,
    ),
)]
#[post("/introspect")]
pub async fn introspect(
    _caller: Authorized<TokensIntrospect>,
    req: HttpRequest,
    body: web::Payload,
    services: web::Data<Services>,
) -> Result<HttpResponse, TokenError> {
    let form = Form::read(&req, body).await?;
    form.value("token_type_hint")?;
    let presented = form.required("token")?;
    let answer = services
        .auth
        .introspect(presented)
        .await
        .map_err(LoginError::from)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(answer))
}

/// Counts a 429 (`too_many`) or a 503 of saturated hashing in the audit trail, which
/// records throttled answers as counts per client network and minute, not one by one.
fn count_throttled(
    services: &Services,
    answer: &Result<HttpResponse, TokenError>,
    client: IpAddr,
    too_many: ThrottledAnswer,
) {
    let throttled = match answer {
        Err(TokenError::Login(LoginError::Throttled { .. })) => too_many,
        Err(TokenError::Login(LoginError::Saturated { .. })) => ThrottledAnswer::TokenBusy,
        _ => return,
    };
    services
        .audit
        .count_throttled(throttled, services.auth.client_network(client));
}

/// An `application/x-www-form-urlencoded` body as RFC 6749 §3.2 reads it: no parameter may
/// be repeated, unknown ones are ignored.
struct Form(Vec<(String, String)>);

impl Form {
    async fn read(req: &HttpRequest, body: web::Payload) -> Result<Self, TokenError> {
        let invalid = |why: &str| TokenError::InvalidRequest(why.into());
        let body = body
            .to_bytes_limited(TOKEN_BODY_LIMIT)
            .await
            .map_err(|_| TokenError::BodyTooLarge)?
            .map_err(|_| invalid("the request body could not be read"))?;
        if !has_media_type(req.headers(), "application/x-www-form-urlencoded") {
            return Err(invalid("body must be application/x-www-form-urlencoded"));
        }
        let body = std::str::from_utf8(&body).map_err(|_| invalid("body is not valid UTF-8"))?;
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(body).map_err(|_| invalid("body is not a valid form"))?;
        let form = Self(pairs);
        for name in ["client_id", "client_secret"] {
            form.value(name)?;
        }
        Ok(form)
    }

    fn value(&self, name: &str) -> Result<Option<String>, TokenError> {
        let mut values = self.0.iter().filter(|(key, _)| key == name);
        let first = values.next().map(|(_, v)| v.clone());
        if values.next().is_some() {
            return Err(TokenError::InvalidRequest(format!(
                "parameter `{name}` is repeated"
            )));
        }
        Ok(first)
    }

    /// The `client_id` of the body or of an `Authorization: Basic` header (RFC 6749 §2.3.1,
    /// each half form-urlencoded), which clients such as Authlib send by default. A secret,
    /// in either place, is not checked: the clients are public. Both places naming
    /// different clients is `invalid_request`.
    fn client_id(&self, req: &HttpRequest) -> Result<Option<String>, TokenError> {
        let invalid = |why: &str| TokenError::InvalidRequest(why.into());
        let in_body = self.value("client_id")?;
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            return Ok(in_body);
        };
        let value = value
            .to_str()
            .map_err(|_| invalid("malformed Authorization header"))?;
        let Some((scheme, credentials)) = value.trim().split_once(' ') else {
            return Ok(in_body);
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return Ok(in_body);
        }
        let decoded = BASE64
            .decode(credentials.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| invalid("malformed Basic credentials"))?;
        let (id, _secret) = decoded.split_once(':').unwrap_or((&decoded, ""));
        let id = percent_decode_str(&id.replace('+', " "))
            .decode_utf8()
            .map_err(|_| invalid("malformed Basic credentials"))?
            .into_owned();
        if id.is_empty() {
            return Ok(in_body);
        }
        match in_body {
            Some(body) if !body.is_empty() && body != id => Err(invalid(
                "`client_id` differs between the Authorization header and the body",
            )),
            _ => Ok(Some(id)),
        }
    }

    fn required(&self, name: &str) -> Result<String, TokenError> {
        match self.value(name)? {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(TokenError::InvalidRequest(format!(
                "parameter `{name}` is required"
            ))),
        }
    }
}

/// The public keys access tokens are signed with, for services that verify tokens
/// themselves (RFC 7517). Cacheable: a key is published here at least `max-age` seconds
/// before it signs (the README's rotation steps).
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 200, description = "The Ed25519 public keys in use", body = JsonWebKeySet,
            headers(("Cache-Control" = String, description = "`public, max-age=300`"))),
    ),
)]
#[get("/.well-known/jwks.json")]
pub async fn jwks(services: web::Data<Services>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(cacheable_for(JWKS_MAX_AGE_SECS))
        .json(services.auth.published_keys())
}

/// This authorization server's metadata (RFC 8414): its issuer, endpoints, grant types and
/// scopes, for clients that discover them. The endpoints are `auth.issuer` followed by
/// each route's path.
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 200, description = "The metadata", body = AuthorizationServerMetadata,
            headers(("Cache-Control" = String, description = "`public, max-age=300`"))),
    ),
)]
#[get("/.well-known/oauth-authorization-server")]
pub async fn metadata(
    req: HttpRequest,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let issuer = services.auth.issuer();
    let base = issuer.trim_end_matches('/');
    let endpoint = |route: &str| {
        req.url_for_static(route)
            .map(|url| format!("{base}{}", url.path()))
            .map_err(|e| ServiceError::internal("a route of the metadata is not mounted", e))
    };
    let strings = |values: &[&str]| values.iter().map(|&value| value.to_owned()).collect();
    let metadata = AuthorizationServerMetadata {
        issuer: issuer.to_owned(),
        token_endpoint: endpoint("token")?,
        revocation_endpoint: endpoint("revoke")?,
        jwks_uri: endpoint("jwks")?,
        response_types_supported: Vec::new(),
        grant_types_supported: strings(&["password", "refresh_token"]),
        scopes_supported: strings(&SCOPES),
        token_endpoint_auth_methods_supported: strings(&["none"]),
        revocation_endpoint_auth_methods_supported: strings(&["none"]),
        introspection_endpoint: endpoint("introspect")?,
        introspection_endpoint_auth_methods_supported: strings(&["bearer"]),
        service_documentation: format!("{base}/docs/"),
    };
    Ok(HttpResponse::Ok()
        .insert_header(cacheable_for(JWKS_MAX_AGE_SECS))
        .json(metadata))
}

/// `Cache-Control: public, max-age=SECS`.
fn cacheable_for(secs: u32) -> header::CacheControl {
    header::CacheControl(vec![
        header::CacheDirective::Public,
        header::CacheDirective::MaxAge(secs),
    ])
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
    HttpResponse::Ok().json(user.0.user)
}

/// Changes the signed-in user's password, given the current one.
///
/// Every session of the user ends (their access tokens within the revocation window, their
/// refresh tokens at once), and this call answers a new token pair for the caller's; the
/// user is mailed that the password changed. A wrong `current_password` counts as a failed
/// login against the client's network and the account.
#[utoipa::path(
    tag = "auth",
    security(("oauth2" = [])),
    request_body(content = PasswordChange, content_type = "application/json"),
    responses(
        (status = 200, description = "Changed: the caller's new token pair", body = TokenResponse,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 403, description = "`current_password` is wrong", body = Problem, content_type = "application/problem+json"),
        JsonBodyErrors,
        (status = 422, description = "A field missing or unknown, or `new_password` breaks the password rules", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed password checks from the client's network or for the account", body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Hashing saturated or database unavailable", body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        GuardedErrors,
    ),
)]
#[put("/me/password")]
pub async fn change_password(
    caller: BearerUser,
    req: HttpRequest,
    body: web::Bytes,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let change: PasswordChange = read_json(
        &req,
        &body,
        "an object of the strings `current_password` and `new_password`, and nothing else",
    )?;
    let tokens = services
        .auth
        .change_password(
            &caller.0,
            change.current_password,
            change.new_password,
            client_ip(&req),
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(tokens))
}

/// A JSON body of the shape `T`: 415 unless `application/json`, 400 unless JSON, 422 naming
/// `shape` otherwise. serde's own message is not echoed: it may quote a value (a password
/// sent as a number).
fn read_json<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
    shape: &'static str,
) -> Result<T, ApiError> {
    if !has_media_type(req.headers(), "application/json") {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json",
            accept_patch: false,
        });
    }
    let document = serde_json::from_slice::<serde_json::Value>(body)
        .map_err(|error| ApiError::MalformedBody(error.to_string()))?;
    serde_json::from_value(document)
        .map_err(|_| ServiceError::invalid("body", format!("must be {shape}")).into())
}

/// Signs up for an account, when `auth.registration` is `open`: an unverified reader, who
/// can log in once the link of the mail that follows has been used.
///
/// 202 whether or not the address already has an account (its owner is told by mail
/// instead), after the same work, so the answer tells nothing about the address.
#[utoipa::path(
    tag = "auth",
    request_body(content = SignUpRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: a mail is on its way to the address"),
        (status = 403, description = "Registration is closed", body = Problem, content_type = "application/problem+json"),
        JsonBodyErrors,
        (status = 422, description = "A field breaks its rule, or is missing or unknown", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ups from the client's network or for the address", body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Hashing saturated or database unavailable", body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
#[post("/")]
pub async fn sign_up(
    req: HttpRequest,
    body: web::Bytes,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    if !services.auth.registration_open() {
        return Err(ApiError::RegistrationClosed);
    }
    let request: SignUpRequest = read_json(
        &req,
        &body,
        "an object of the strings `name`, `email` and `password`, and nothing else",
    )?;
    services
        .auth
        .sign_up(
            request.name,
            request.email,
            request.password,
            client_ip(&req),
        )
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

/// Verifies the address of a sign-up with the token its mail's link carries; the account
/// can then log in. Only this `POST` uses the token (mail scanners fetch links with `GET`).
#[utoipa::path(
    tag = "auth",
    request_body(content = VerifyEmailRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "Verified"),
        (status = 400, description = "Not JSON, or a token that was used, has expired or was replaced", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`token` missing, or a member unknown", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
#[post("/verify")]
pub async fn verify_email(
    req: HttpRequest,
    body: web::Bytes,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let request: VerifyEmailRequest = read_json(
        &req,
        &body,
        "an object with the string `token`, and nothing else",
    )?;
    if services.auth.verify_email(request.token).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::AccountToken)
    }
}

/// Asks for a password reset, when `auth.password_reset` is `on`: the account of `email`,
/// if there is one, is mailed a single-use link.
///
/// 202 whether or not there is an account, after the same work, so the answer tells
/// nothing about the address.
#[utoipa::path(
    tag = "auth",
    request_body(content = PasswordResetRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: a mail is on its way if the address has an account"),
        (status = 403, description = "Password reset is off", body = Problem, content_type = "application/problem+json"),
        JsonBodyErrors,
        (status = 422, description = "`email` missing or not an address, or a member unknown", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from the client's network or for the address", body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
#[post("/password-reset")]
pub async fn request_password_reset(
    req: HttpRequest,
    body: web::Bytes,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    if !services.auth.password_reset_on() {
        return Err(ApiError::PasswordResetOff);
    }
    let request: PasswordResetRequest = read_json(
        &req,
        &body,
        "an object with the string `email`, and nothing else",
    )?;
    services
        .auth
        .request_password_reset(request.email, client_ip(&req))
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

/// Sets a new password with the token of a reset mail's link: every session of the
/// account ends, and its address counts as verified.
#[utoipa::path(
    tag = "auth",
    request_body(content = PasswordResetConfirmation, content_type = "application/json"),
    responses(
        (status = 204, description = "The password is set"),
        (status = 400, description = "Not JSON, or a token that was used, has expired or was replaced", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Password reset is off", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`new_password` breaks the password rules, or a member is missing or unknown", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Hashing saturated or database unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
#[post("/password-reset/confirm")]
pub async fn confirm_password_reset(
    req: HttpRequest,
    body: web::Bytes,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    if !services.auth.password_reset_on() {
        return Err(ApiError::PasswordResetOff);
    }
    let request: PasswordResetConfirmation = read_json(
        &req,
        &body,
        "an object of the strings `token` and `new_password`, and nothing else",
    )?;
    if services
        .auth
        .confirm_password_reset(request.token, request.new_password)
        .await?
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::AccountToken)
    }
}

/// One page of users, by id (admins: scope `users:read`). When more follow, a
/// `Link: <…>; rel="next"` header gives the next page's URL.
#[utoipa::path(
    tag = "auth",
    security(("oauth2" = ["users:read"])),
    params(
        ("limit" = Option<i64>, Query, description = "Page size (default 100)", minimum = 1, maximum = 1000),
        ("offset" = Option<i64>, Query, description = "Users to skip (default 0)", minimum = 0, maximum = 1_000_000_000),
    ),
    responses(
        (status = 200, description = "One page of users", body = Vec<UserSchema>,
            headers(("Link" = String, description = "`<url>; rel=\"next\"` when another page follows"))),
        (status = 403, description = "The token lacks `users:read`", body = Problem,
            content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer error=\"insufficient_scope\", scope=\"users:read\"`"))),
        (status = 422, description = "`limit` or `offset` malformed or out of range", body = Problem,
            content_type = "application/problem+json"),
        GuardedErrors,
    ),
)]
#[get("/")]
pub async fn list_users(
    _user: Authorized<UsersRead>,
    req: HttpRequest,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let page = query::page(&query_pairs(&req)?, services.auth.page_sizes())?;
    let page = block(move || services.auth.users_page(page)).await??;
    let mut response = HttpResponse::Ok();
    if let Some(next) = page.next {
        response.insert_header(next_page_link(
            "/users/",
            &[
                ("limit", next.limit.to_string()),
                ("offset", next.offset.to_string()),
            ],
        ));
    }
    Ok(response.json(page.users))
}

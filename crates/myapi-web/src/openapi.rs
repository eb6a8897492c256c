//! The parts of the OpenAPI 3.1 document that are not routes: its info, the shared
//! schemas, the OAuth2 scheme and the tags. Each route adds its own path as it is mounted
//! (see [`crate::routes`]).

use myapi_schemas::Problem;
use utoipa::openapi::security::{Flow, OAuth2, Password, Scopes, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API description served at `/openapi.json` and shown by Swagger UI at `/docs/`.
#[derive(OpenApi)]
#[openapi(
    info(title = "myapi", description = "A three-tier REST API: movies behind OAuth2 password login."),
    components(schemas(
        myapi_schemas::AuditEvent,
        myapi_schemas::AuditEventSchema,
        myapi_schemas::HealthStatus,
        myapi_schemas::MovieSchema,
        myapi_schemas::OAuthErrorResponse,
        myapi_schemas::Problem,
        myapi_schemas::FieldError,
        myapi_schemas::RefreshTokenForm,
        myapi_schemas::RevokeForm,
        myapi_schemas::TokenForm,
        myapi_schemas::TokenRequest,
        myapi_schemas::TokenResponse,
        myapi_schemas::UserSchema,
        // [xtask] schemas
    )),
    modifiers(&OAuth2PasswordFlow),
    tags(
        (name = "health", description = "Probes"),
        (name = "auth", description = "Login and the current user"),
        (name = "movies", description = "The movies service"),
        (name = "audit", description = "The audit trail of security-relevant events"),
        // [xtask] tags
    ),
)]
pub struct ApiDoc;

/// Declares the `oauth2` security scheme: the password flow against `/token`, with every
/// scope (Swagger UI's Authorize offers them; none ticked means all the role allows).
struct OAuth2PasswordFlow;

impl Modify for OAuth2PasswordFlow {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::with_refresh_url(
                "/token",
                Scopes::from_iter(myapi_services::auth::SCOPES.iter().map(|scope| {
                    let (resource, action) = scope.split_once(':').unwrap_or((scope, ""));
                    ((*scope).to_owned(), format!("{action} {resource}"))
                })),
                "/token",
            ))])),
        );
    }
}

/// The errors every route behind the bearer guard can give, documented once.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a documentation type: never constructed
pub enum GuardedErrors {
    /// Token problems.
    #[response(
        status = 401,
        description = "Missing, invalid, expired or revoked token",
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "Bearer challenge (RFC 6750)"))
    )]
    Unauthorized(Problem),
    /// Database outage.
    #[response(
        status = 503,
        description = "Database unavailable",
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds to wait"))
    )]
    Unavailable(Problem),
}

/// The errors every conditional movie write (PUT, PATCH, DELETE) can give besides its own,
/// documented once.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a documentation type: never constructed
pub enum ConditionalWriteErrors {
    #[response(
        status = 403,
        description = "The token lacks `movies:write`",
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "`Bearer error=\"insufficient_scope\"`"))
    )]
    InsufficientScope(Problem),
    #[response(
        status = 404,
        description = "No such movie",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 412,
        description = "`If-Match` does not name the movie's current `ETag`",
        content_type = "application/problem+json"
    )]
    PreconditionFailed(Problem),
    #[response(
        status = 428,
        description = "`If-Match` is missing",
        content_type = "application/problem+json"
    )]
    PreconditionRequired(Problem),
}

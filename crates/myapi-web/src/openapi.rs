//! The parts of the OpenAPI 3.1 document that are not routes: its info, the shared
//! schemas, the OAuth2 scheme and the tags. Each route adds its own path as it is mounted
//! (see [`crate::routes`]).

use myapi_schemas::{MovieSchema, Problem};
use myapi_services::movies::{FieldKind, MOVIE_FIELDS, RATINGS, RELEASE_YEARS, TITLE_CHARS};
use serde_json::json;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{Flow, OAuth2, Password, Scopes, SecurityScheme};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

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

/// The errors of every route that reads a JSON body of its own (the account routes),
/// documented once; each documents its 422 itself.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a documentation type: never constructed
pub enum JsonBodyErrors {
    #[response(
        status = 400,
        description = "The body is not JSON",
        content_type = "application/problem+json"
    )]
    Malformed(Problem),
    #[response(
        status = 415,
        description = "The body is not `application/json`",
        content_type = "application/problem+json"
    )]
    UnsupportedMediaType(Problem),
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

/// The answers of both single-movie reads (`/movies/{movie_id}`, `/movies/?movie_id=`)
/// besides their own 422, documented once.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a documentation type: never constructed
pub enum MovieReadResponses {
    #[response(
        status = 200,
        description = "The movie",
        headers(
            ("ETag" = String, description = "The movie's version (strong)"),
            ("Cache-Control" = String, description = "`private, no-cache`: keep it, but ask again (`If-None-Match`) before using it")
        )
    )]
    Found(MovieSchema),
    #[response(
        status = 304,
        description = "`If-None-Match` names the current version",
        headers(
            ("ETag" = String, description = "The movie's version (strong)"),
            ("Cache-Control" = String, description = "`private, no-cache`")
        )
    )]
    NotModified,
    #[response(
        status = 404,
        description = "No such movie",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
}

/// The body of `POST /movies/` and `PUT /movies/{movie_id}`, as the OpenAPI schema
/// `MovieInput`, built from the service's [`MOVIE_FIELDS`].
pub struct MovieInput;

/// The body of `PATCH /movies/{movie_id}`, as the OpenAPI schema `MoviePatch`, built from the
/// service's [`MOVIE_FIELDS`].
pub struct MoviePatch;

impl PartialSchema for MovieInput {
    fn schema() -> RefOr<Schema> {
        movie_document(
            "A movie as a client writes it: the body of `POST /movies/` and `PUT /movies/{movie_id}`.\n\
             The id is not part of it: the server assigns it, and the path names it.",
            true,
        )
    }
}

impl ToSchema for MovieInput {}

impl PartialSchema for MoviePatch {
    fn schema() -> RefOr<Schema> {
        movie_document(
            "An RFC 7396 merge patch for a movie (`PATCH /movies/{movie_id}`,\n\
             `application/merge-patch+json`): the fields to change; absent ones stay as they are.\n\
             A movie needs all its fields, so `null` (which removes one) is refused.",
            false,
        )
    }
}

impl ToSchema for MoviePatch {}

/// An object of the movie fields, no others; all of them `required` or none.
fn movie_document(description: &str, required: bool) -> RefOr<Schema> {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for field in MOVIE_FIELDS {
        object = object.property(field.name, field_schema(field.kind));
        if required {
            object = object.required(field.name);
        }
    }
    object.into()
}

/// A field's JSON Schema: its type and the limits of its rule.
// `example` is the keyword utoipa's derive writes for the other schemas.
#[allow(deprecated)]
fn field_schema(kind: FieldKind) -> ObjectBuilder {
    match kind {
        FieldKind::Title => ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "Title: {} to {} characters, no control characters.",
                TITLE_CHARS.start(),
                TITLE_CHARS.end()
            )))
            .example(Some(json!("The Shawshank Redemption")))
            .min_length(Some(*TITLE_CHARS.start()))
            .max_length(Some(*TITLE_CHARS.end()))
            // Unicode's control characters (`char::is_control`): C0, DEL and C1.
            .pattern(Some("^[^\\u0000-\\u001F\\u007F-\\u009F]*$")),
        FieldKind::Year => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some("Release year."))
            .example(Some(json!(1994)))
            .minimum(Some(*RELEASE_YEARS.start()))
            .maximum(Some(*RELEASE_YEARS.end())),
        FieldKind::Rating => ObjectBuilder::new()
            .schema_type(Type::Number)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
            .description(Some(format!(
                "Rating from {} to {} with at most one decimal.",
                RATINGS.start(),
                RATINGS.end()
            )))
            .example(Some(json!(9.2)))
            .minimum(Some(*RATINGS.start()))
            .maximum(Some(*RATINGS.end()))
            .multiple_of(Some(0.1)),
    }
}

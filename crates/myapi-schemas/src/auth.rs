use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user, as `/users/me` and `/users/` return it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserSchema {
    /// User id (the token's `sub`).
    #[schema(example = 1)]
    pub user_id: i32,
    /// Display name.
    #[schema(example = "Ada Lovelace")]
    pub name: String,
    /// Lower-case email, the login name.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// `reader` (reads), `editor` (also writes movies) or `admin` (everything).
    #[schema(example = "reader")]
    pub role: String,
    /// `false` from a sign-up until its mail's link is followed; such an account cannot log
    /// in. Accounts operators create are verified.
    pub email_verified: bool,
}

/// RFC 6749 §5.1 access token response from `POST /token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The JWT to send as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    pub token_type: String,
    /// Seconds until the token expires.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// The scopes granted, space-separated; sent whenever they differ from those asked for
    /// (RFC 6749 §5.1), so also when none were asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "movies:read movies:write")]
    pub scope: Option<String>,
    /// Exchange it at `POST /token` (`grant_type=refresh_token`) for a new access token
    /// and a new refresh token; each works once (RFC 6749 §6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// What `POST /token` accepts, form-encoded: the password grant or the refresh grant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TokenRequest {
    Password(TokenForm),
    Refresh(RefreshTokenForm),
}

/// RFC 6749 §6 refresh request, form-encoded.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefreshTokenForm {
    #[schema(example = "refresh_token", pattern = "^refresh_token$")]
    pub grant_type: String,
    /// A refresh token from an earlier `/token` response; it is used up by this request.
    #[schema(min_length = 1)]
    pub refresh_token: String,
    /// Space-separated; may only narrow what the login was granted.
    pub scope: Option<String>,
    /// When sent, the client of the login (else `invalid_grant`).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub client_id: Option<String>,
}

/// RFC 7009 revocation request, form-encoded.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevokeForm {
    /// A refresh token: its whole family is revoked, and with it the access tokens the
    /// family issued. Access tokens cannot be revoked one by one.
    #[schema(min_length = 1)]
    pub token: String,
    /// `refresh_token` or `access_token`; a hint only.
    pub token_type_hint: Option<String>,
}

/// RFC 6749 §4.3.2 password-grant request, form-encoded (what Swagger UI's Authorize sends).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenForm {
    /// Must be `password` when present.
    #[schema(example = "password", pattern = "^password$")]
    pub grant_type: Option<String>,
    /// The account's email.
    #[schema(example = "ada@example.com", min_length = 1)]
    pub username: String,
    /// The account's password.
    #[schema(format = Password, min_length = 1)]
    pub password: String,
    /// Space-separated scopes (`movies:read`, `movies:write`, `users:read`, `audit:read`);
    /// omitted or empty means all the user's role allows. Values without a colon are ignored.
    #[schema(example = "movies:read")]
    pub scope: Option<String>,
    /// The OAuth client asking, 1 to 64 of `A-Z a-z 0-9 . _ -` (one of `auth.client_ids`
    /// when that is set); tokens name it in `client_id`. Default `auth.default_client_id`.
    #[schema(example = "myapi-docs", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub client_id: Option<String>,
    /// Accepted and ignored: clients are public.
    pub client_secret: Option<String>,
}

/// The public keys access tokens are signed with (a JWK Set, RFC 7517 §5). A verifier picks
/// the key whose `kid` the token's header names; secrets (HS256 keys) are never listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JsonWebKeySet {
    pub keys: Vec<JsonWebKey>,
}

/// One Ed25519 public key (RFC 8037 §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JsonWebKey {
    #[schema(example = "OKP")]
    pub kty: String,
    #[schema(example = "Ed25519")]
    pub crv: String,
    /// The `kid` of the tokens this key verifies.
    pub kid: String,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub use_: String,
    #[schema(example = "EdDSA")]
    pub alg: String,
    /// The public key, base64url without padding.
    pub x: String,
}

/// What a client needs to know about this authorization server (RFC 8414 §2), served at
/// `/.well-known/oauth-authorization-server`. Endpoints are URLs under `issuer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthorizationServerMetadata {
    /// `auth.issuer`: the `iss` of every token.
    #[schema(example = "https://api.example.com")]
    pub issuer: String,
    pub token_endpoint: String,
    pub revocation_endpoint: String,
    pub jwks_uri: String,
    /// No authorization endpoint: tokens come from `/token` alone.
    pub response_types_supported: Vec<String>,
    #[schema(example = json!(["password", "refresh_token"]))]
    pub grant_types_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    /// `none`: clients are public (a `client_id` is read, no secret is checked).
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint: String,
    /// `bearer`: the caller sends an access token with the scope `tokens:introspect`
    /// (RFC 7662 §2.1 leaves the method open; this is not a registered method name).
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub service_documentation: String,
}

/// `PUT /users/me/password`: the account's password now, and the one to replace it.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// The same rules as every password: `auth.password_min_chars` to
    /// `auth.password_max_chars` characters (8 to 256 by default, as documented here), no NUL.
    #[schema(min_length = 8, max_length = 256, pattern = "^[^\\x00]*$")]
    pub new_password: String,
}

impl std::fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordChange(***)")
    }
}

/// `POST /users/`: a sign-up, with the rules of `myapi-cli create-user`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    #[schema(example = "Ada Lovelace", min_length = 1, max_length = 200)]
    pub name: String,
    /// A bare `name@domain.tld`; stored lower-case.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// `auth.password_min_chars` to `auth.password_max_chars` characters (8 to 256 by
    /// default), no NUL.
    #[schema(min_length = 8, max_length = 256, pattern = "^[^\\x00]*$")]
    pub password: String,
}

impl std::fmt::Debug for SignUpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignUpRequest")
            .field("name", &self.name)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// `POST /users/verify`: the token of a sign-up mail's link.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    #[schema(min_length = 1)]
    pub token: String,
}

impl std::fmt::Debug for VerifyEmailRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyEmailRequest(***)")
    }
}

/// `POST /password-reset`: the address of the account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    #[schema(example = "ada@example.com")]
    pub email: String,
}

/// `POST /password-reset/confirm`: the token of a reset mail's link, and the new password.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirmation {
    #[schema(min_length = 1)]
    pub token: String,
    /// The password rules of every password (8 to 256 characters by default, no NUL).
    #[schema(min_length = 8, max_length = 256, pattern = "^[^\\x00]*$")]
    pub new_password: String,
}

impl std::fmt::Debug for PasswordResetConfirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordResetConfirmation(***)")
    }
}

/// RFC 7662 introspection request, form-encoded. (Documentation only: the route reads the
/// form itself.)
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct IntrospectionForm {
    /// An access token or a refresh token of this server.
    #[schema(min_length = 1)]
    pub token: String,
    /// `access_token` or `refresh_token`; a hint only (the token's form decides).
    pub token_type_hint: Option<String>,
}

impl std::fmt::Debug for IntrospectionForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionForm")
            .field("token_type_hint", &self.token_type_hint)
            .finish_non_exhaustive()
    }
}

/// RFC 7662 §2.2: whether a token is active now and, only when it is, what it stands for.
/// An inactive token (expired, revoked, used, unknown, or of a user whose password has
/// changed since) is `{"active": false}` and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IntrospectionResponse {
    pub active: bool,
    /// The scopes the token is good for now: those granted, narrowed to what the user's
    /// role allows today.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The user's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `Bearer` for an access token, `refresh_token` for a refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issue time, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// The user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Access tokens only: `auth.token_audience`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Access tokens only: the token's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The login (refresh-token family) the token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

//! The API's data shapes: what goes over the wire, with serde and OpenAPI schemas.
//!
//! This crate knows nothing of diesel or actix: services build these shapes and web
//! serialises them. No shape here ever carries a password hash.

mod audit;
mod auth;
mod errors;
mod movies;
// [xtask] schema modules

pub use audit::{AuditEvent, AuditEventSchema};
pub use auth::{
    AuthorizationServerMetadata, IntrospectionForm, IntrospectionResponse, JsonWebKey,
    JsonWebKeySet, PasswordChange, PasswordResetConfirmation, PasswordResetRequest,
    RefreshTokenForm, RevokeForm, SignUpRequest, TokenForm, TokenRequest, TokenResponse,
    UserSchema, VerifyEmailRequest,
};
pub use errors::{FieldError, OAuthErrorResponse, Problem};
pub use movies::MovieSchema;
// [xtask] schema exports

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `/health` and `/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthStatus {
    /// `ok`, or what is wrong.
    #[schema(example = "ok")]
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_uses_rfc_9457_field_names_and_omits_empty_extras() {
        let problem = Problem {
            problem_type: "about:blank".into(),
            title: "Not Found".into(),
            status: 404,
            detail: "movie 9 not found".into(),
            request_id: None,
            errors: Vec::new(),
            more_errors: None,
        };
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "movie 9 not found"})
        );
    }

    #[test]
    fn ratings_serialise_as_written() {
        let movie = MovieSchema {
            movie_id: 1,
            title: "The Shawshank Redemption".into(),
            released: 1994,
            rating: 9.2,
        };
        assert_eq!(
            serde_json::to_string(&movie).unwrap(),
            r#"{"movie_id":1,"title":"The Shawshank Redemption","released":1994,"rating":9.2}"#
        );
    }

    #[test]
    fn audit_event_names_are_serde_names() {
        for event in AuditEvent::ALL {
            assert_eq!(
                serde_json::to_value(event).unwrap(),
                serde_json::json!(event.as_str())
            );
            assert_eq!(event.as_str().parse(), Ok(event));
        }
        assert!("login".parse::<AuditEvent>().is_err());
    }

    #[test]
    fn user_shape_has_no_password_field() {
        let user = UserSchema {
            user_id: 1,
            name: "Ada".into(),
            email: "ada@example.com".into(),
            role: "reader".into(),
            email_verified: true,
        };
        let json = serde_json::to_value(&user).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["email", "email_verified", "name", "role", "user_id"]);
    }
}

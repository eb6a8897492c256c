use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// RFC 9457 problem details: the body of every error except `/token`'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type (`about:blank` when only the status matters).
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub problem_type: String,
    /// Short summary of the problem type.
    #[schema(example = "Not Found")]
    pub title: String,
    /// The HTTP status code.
    #[schema(example = 404)]
    pub status: u16,
    /// What went wrong with this request.
    #[schema(example = "movie 42 not found")]
    pub detail: String,
    /// Id of the request in the server log (always present on 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The offending fields, for validation errors; at most the first 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// How many offending fields there were beyond those `errors` lists; absent when it
    /// lists them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 8296)]
    pub more_errors: Option<u64>,
}

/// One invalid request field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Parameter or field name.
    #[schema(example = "year")]
    pub field: String,
    /// Why it was refused.
    #[schema(example = "must be an integer")]
    pub message: String,
}

/// RFC 6749 §5.2 error response from `POST /token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OAuthErrorResponse {
    /// `invalid_request`, `invalid_grant` or `unsupported_grant_type`.
    #[schema(example = "invalid_grant")]
    pub error: String,
    /// Human-readable explanation.
    #[schema(example = "incorrect username or password")]
    pub error_description: String,
}

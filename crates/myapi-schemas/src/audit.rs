use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One event of the audit trail, as `GET /audit/` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEventSchema {
    /// Increasing; the cursor `after` of the next page.
    #[schema(example = 42, minimum = 1)]
    pub id: i64,
    /// When, RFC 3339 in UTC, to the second; for a count of throttled answers, the start of
    /// its minute.
    #[schema(example = "2026-12-06T10:15:00Z")]
    pub at: String,
    /// `login_succeeded`, `login_failed`, `login_throttled`, `refresh_reuse_detected`,
    /// `family_revoked`, `token_revoked`, `password_changed`, `role_changed`, `user_created`,
    /// `user_deleted` or `sessions_revoked`.
    #[schema(example = "login_failed")]
    pub event: String,
    /// The acting user's id, `cli` (the admin command line) or `anonymous` (no valid
    /// credentials).
    #[schema(example = "cli")]
    pub actor: String,
    /// The user the event is about, if it is a known user (kept after the user is deleted).
    #[schema(example = 7)]
    pub subject_user_id: Option<i32>,
    /// The subject's email when the event happened; for a failed login to an account that
    /// does not exist, `sha256:` and a digest of the username (never the text).
    #[schema(example = "ada@example.com")]
    pub subject: Option<String>,
    /// The client's address as resolved through trusted proxies; for throttled answers, the
    /// client network they count against.
    #[schema(example = "203.0.113.7")]
    pub client: Option<String>,
    /// The `X-Request-Id` of the request that caused it.
    pub request_id: Option<String>,
    /// How many answers this event stands for: 1, except for `login_throttled`, counted per
    /// client network and minute.
    #[schema(example = 1, minimum = 1)]
    pub count: i32,
    /// What else there is to say: the new role, the scope granted, the answer throttled.
    #[schema(example = "reader -> editor")]
    pub detail: Option<String>,
}

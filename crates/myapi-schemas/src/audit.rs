use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What happened. The names are stable: stored, filtered on and printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// A password login issued tokens.
    LoginSucceeded,
    /// A password login was refused: unknown account or wrong password.
    LoginFailed,
    /// Logins, refreshes or revocations answered 429 or 503, counted per network and minute.
    LoginThrottled,
    /// A rotated refresh token was presented again after the grace period.
    RefreshReuseDetected,
    /// A refresh-token family was revoked (by `/revoke` or reuse detection).
    FamilyRevoked,
    /// `/revoke` was given a known refresh token.
    TokenRevoked,
    PasswordChanged,
    RoleChanged,
    UserCreated,
    UserDeleted,
    /// Every refresh-token family of a user was revoked (`myapi-cli revoke-sessions`).
    SessionsRevoked,
    /// `POST /users/` with open registration: an account made (or made again, its
    /// verification having expired), or a mail to the owner of an address already taken.
    SignedUp,
    /// A sign-up's token came back: the account may log in.
    EmailVerified,
    /// `POST /password-reset`, for an account (mailed a link) or for an address without one.
    PasswordResetRequested,
    /// A reset link's token came back with a new password: every session ended.
    PasswordResetCompleted,
}

impl AuditEvent {
    pub const ALL: [Self; 15] = [
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::LoginThrottled,
        Self::RefreshReuseDetected,
        Self::FamilyRevoked,
        Self::TokenRevoked,
        Self::PasswordChanged,
        Self::RoleChanged,
        Self::UserCreated,
        Self::UserDeleted,
        Self::SessionsRevoked,
        Self::SignedUp,
        Self::EmailVerified,
        Self::PasswordResetRequested,
        Self::PasswordResetCompleted,
    ];

    /// The name serde writes, too.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::LoginThrottled => "login_throttled",
            Self::RefreshReuseDetected => "refresh_reuse_detected",
            Self::FamilyRevoked => "family_revoked",
            Self::TokenRevoked => "token_revoked",
            Self::PasswordChanged => "password_changed",
            Self::RoleChanged => "role_changed",
            Self::UserCreated => "user_created",
            Self::UserDeleted => "user_deleted",
            Self::SessionsRevoked => "sessions_revoked",
            Self::SignedUp => "signed_up",
            Self::EmailVerified => "email_verified",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordResetCompleted => "password_reset_completed",
        }
    }
}

impl FromStr for AuditEvent {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|event| event.as_str() == raw)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|e| e.as_str()).collect();
                format!("unknown event; one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// does not exist, `hmac:` and a keyed digest of the username (never the text).
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

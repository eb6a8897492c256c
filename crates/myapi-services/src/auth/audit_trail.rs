//! What the auth service writes to the audit trail on its own: failed logins, which change
//! nothing else. Every other auth event is recorded by the data manager in the transaction
//! of its change.

use std::net::IpAddr;

use super::AuthService;
use super::budget::digest;
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::{ServiceError, blocking};

impl AuthService {
    /// Records a refused password login: about the account `known` (its id and email), or
    /// else about the username `account` (normalised) by its digest ([`username_digest`]).
    pub(super) async fn audit_failed_login(
        &self,
        account: &str,
        known: Option<(i32, String)>,
        client: IpAddr,
    ) -> Result<(), ServiceError> {
        let entry = AuditEntry::new(AuditEvent::LoginFailed, Actor::Anonymous).client(client);
        let entry = match known {
            Some((user_id, email)) => entry.user_id(user_id).email(&email),
            None => entry.unknown_subject(username_digest(account)),
        };
        let audit = self.audit.clone();
        blocking(move || crate::audit::record_alone(&audit, &entry)).await
    }
}

/// `sha256:` and the hex of a 128-bit SHA-256 prefix of a normalised username, the key the
/// login budget charges it to: what a failed login to no account stores, since people type
/// passwords into the username field.
pub fn username_digest(account: &str) -> String {
    let hex: String = digest(account)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_budget_key_and_hides_the_text() {
        // printf %s ada@example.com | sha256sum | cut -c1-32
        assert_eq!(
            username_digest("ada@example.com"),
            "sha256:b5fc85e55755f9e0d030a10ab4429b6b"
        );
    }
}

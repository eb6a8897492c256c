//! What the auth service writes to the audit trail on its own: failed logins, which change
//! nothing else. Every other auth event is recorded by the data manager in the transaction
//! of its change.

use std::net::IpAddr;

use super::AuthService;
use super::budget::username_digest;
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

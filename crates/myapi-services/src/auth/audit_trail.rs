//! What the auth service writes to the audit trail on its own: failed logins, which change
//! nothing else. Every other auth event is recorded by the data manager in the transaction
//! of its change.

use std::net::IpAddr;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::AuthService;
use crate::ServiceError;
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::request_context::blocking;
use crate::secrets::hex;

impl AuthService {
    /// What a failed login to no account stores of its username (normalised), since people
    /// type passwords into that field: `hmac:` and the hex of a 128-bit HMAC-SHA256 under a
    /// key derived from the signing key, so that a reader of the trail cannot test guesses
    /// against it. The same username gets the same digest while the signing key stays.
    pub fn username_digest(&self, account: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&(*self.audit_digest_key).into());
        mac.update(account.as_bytes());
        format!("hmac:{}", hex(&mac.finalize().into_bytes()[..16]))
    }

    /// Records a refused password login: about the account `known` (its id and email), or
    /// else about the username `account` (normalised) by its digest
    /// ([`AuthService::username_digest`]); `why` when the password was right.
    pub(super) async fn audit_failed_login(
        &self,
        account: &str,
        known: Option<(i32, String)>,
        client: IpAddr,
        why: Option<&'static str>,
    ) -> Result<(), ServiceError> {
        let mut entry = AuditEntry::new(AuditEvent::LoginFailed, Actor::Anonymous).client(client);
        if let Some(why) = why {
            entry = entry.detail(why);
        }
        let entry = match known {
            Some((user_id, email)) => entry.user_id(user_id).email(&email),
            None => entry.unknown_subject(self.username_digest(account)),
        };
        let audit = self.audit.clone();
        blocking(move || crate::audit::record_alone(&audit, &entry)).await
    }
}

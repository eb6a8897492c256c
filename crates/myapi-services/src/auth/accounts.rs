//! What users do to their own accounts: change their password.

use std::net::IpAddr;
use std::sync::Arc;

use myapi_schemas::TokenResponse;

use super::tokens::Session;
use super::{AuthService, AuthenticatedUser, LoginError};
use crate::ServiceError;
use crate::audit::{Actor, AuditEntry, AuditEvent, unix_now};
use crate::mail::OutgoingMail;
use crate::request_context::blocking;
use crate::secrets::random_id;

impl AuthService {
    /// A signed-in user's change of their own password, given the current one.
    ///
    /// The current password is checked as a login checks it: against the login budget of
    /// the client's network and of the account (a wrong one counts as a failed login, or
    /// this would be a password oracle), on the hashing threads. Then, in one transaction:
    /// the new hash and a new security stamp (so every access token ends), every session
    /// of the user revoked, a new session for the caller (same client, same scopes), a
    /// "your password was changed" mail queued. Answers the new session's token pair.
    pub async fn change_password(
        &self,
        caller: &AuthenticatedUser,
        current: String,
        new: String,
        client: IpAddr,
    ) -> Result<TokenResponse, LoginError> {
        let new = self.parse_password(new).map_err(|invalid| {
            LoginError::Service(ServiceError::invalid("new_password", invalid.message))
        })?;
        let email = caller.user.email.clone();
        let attempt = self.budget_keys.attempt(&email, client);
        let network = attempt.client;
        self.budget_step(move |budget| budget.check_client(&network))
            .await?;
        let ticket = self.hashing.try_admit().ok_or(LoginError::Saturated {
            retry_after_secs: super::BUSY_RETRY_AFTER_SECS,
        })?;
        let (users, budget) = (self.users.clone(), Arc::clone(&self.budget));
        let user_id = caller.user.user_id;
        let (user, reservation) = blocking(move || {
            let user = users.find_by_id(user_id)?;
            let stamp = user.as_ref().map(|u| u.security_stamp.as_str());
            Ok(budget
                .reserve(&attempt, stamp)
                .map(|charged| (user, charged)))
        })
        .await??;
        let check = self.password_check(user, current);
        let hasher = self.hasher.clone();
        let checked = ticket
            .run(move || {
                let (user, _) = check();
                // Hashed on the same thread only when the current password was right.
                let new_hash = user.as_ref().map(|_| hasher.hash(&new.0));
                (user, new_hash)
            })
            .await;
        let (user, new_hash) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                let cancelled = self
                    .budget_step(move |budget| Ok(budget.release(&reservation, None)?))
                    .await;
                if let Err(cancel_error) = cancelled {
                    log::warn!("login budget: a cancelled attempt stays counted: {cancel_error}");
                }
                return Err(error.into());
            }
        };
        let (Some(user), Some(new_hash)) = (user, new_hash) else {
            let known = Some((user_id, email.clone()));
            let why = Some("password change: wrong current password");
            self.audit_failed_login(&email, known, client, why).await?;
            return Err(LoginError::InvalidGrant);
        };
        let new_hash = new_hash?;
        let client_id = self
            .clients
            .resolve(caller.client_id.as_deref())
            .or_else(|_| self.clients.resolve(None))?;
        let scopes = caller.scopes.clone();
        let mut changed = user.clone();
        changed.security_stamp = random_id();
        let (refresh_token, (family, first)) = self.new_session(&changed, &scopes, &client_id);
        let family_id = family.family_id.clone();
        let audit = AuditEntry::new(AuditEvent::PasswordChanged, Actor::User(user_id))
            .user_id(user_id)
            .email(&user.email)
            .client(client);
        let body = format!(
            "The password of your account {email} was changed at {when} (Unix time), from \
             the network {network}. Every other session of the account has ended.\n\n\
             If you did not change it, someone else knows your password: ask an \
             administrator to reset it.",
            email = user.email,
            when = unix_now(),
            network = self.budget_keys.network(client),
        );
        let (sessions, outbox, budget) = (
            self.sessions.clone(),
            self.outbox.clone(),
            Arc::clone(&self.budget),
        );
        let (checked_stamp, new_stamp) =
            (user.security_stamp.clone(), changed.security_stamp.clone());
        let to = user.email.clone();
        let done = blocking(move || {
            let mail = OutgoingMail {
                to: &to,
                subject: "Your password was changed",
                body: &body,
            };
            let done = sessions.change_password(
                &checked_stamp,
                &new_hash,
                &family,
                &first,
                &outbox,
                &mail,
                &audit,
            )?;
            if done {
                budget.release(&reservation, Some(&new_stamp))?;
            }
            Ok(done)
        })
        .await?;
        if !done {
            // Another change (or revoke-sessions) committed since the check: it wins.
            return Err(LoginError::InvalidGrant);
        }
        self.outbox.wake_sender();
        let session = Session {
            family_id: &family_id,
            client_id: client_id.as_str(),
        };
        Ok(self.grant(&changed, None, &scopes, refresh_token, session)?)
    }
}

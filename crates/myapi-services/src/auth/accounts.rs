//! What users do to their own accounts: sign up (with `auth.registration = "open"`), verify
//! their address, change their password.

use std::net::IpAddr;
use std::sync::Arc;

use myapi_models::rows::NewUserRow;
use myapi_schemas::TokenResponse;

use super::credentials::{Email, UserName};
use super::refresh_secret::hash_secret;
use super::tokens::Session;
use super::{AuthService, AuthenticatedUser, LoginBudget, LoginError, Role};
use crate::ServiceError;
use crate::audit::{Actor, AuditEntry, AuditEvent, unix_now};
use crate::config::{PasswordReset, Registration};
use crate::mail::OutgoingMail;
use crate::request_context::{self, blocking};
use crate::secrets::{random_id, random_secret};

impl AuthService {
    /// Whether `POST /users/` signs people up (`auth.registration`).
    pub fn registration_open(&self) -> bool {
        self.registration == Registration::Open
    }

    /// A sign-up: an unverified reader, and a mail with a link to verify the address.
    ///
    /// The answer is the same whether or not the address was taken (the owner of a taken
    /// one gets a mail saying someone tried), and so is the work: the password is hashed in
    /// every case. Each sign-up spends the client network's and the address's own buckets
    /// (`auth.signup_*`), never the login budget.
    pub async fn sign_up(
        &self,
        name: String,
        email: String,
        password: String,
        client: IpAddr,
    ) -> Result<(), LoginError> {
        let (name, email, password) = match (
            UserName::parse(&name),
            Email::parse(&email),
            self.parse_password(password),
        ) {
            (Ok(name), Ok(email), Ok(password)) => (name, email, password),
            (name, email, password) => {
                let fields = [name.err(), email.err(), password.err()];
                return Err(ServiceError::Invalid(fields.into_iter().flatten().collect()).into());
            }
        };
        self.spend(&self.signup_budget, email.as_str(), client)
            .await?;
        let ticket = self.hashing.try_admit().ok_or(LoginError::Saturated {
            retry_after_secs: super::BUSY_RETRY_AFTER_SECS,
        })?;
        let hasher = self.hasher.clone();
        let hashed = ticket.run(move || hasher.hash(&password.0)).await??;
        let (token, now) = (random_secret(), unix_now());
        // The name the caller chose stays out of the mail: anyone may sign up any address,
        // and their text must not reach its owner.
        let welcome = format!(
            "To verify your address and start using your new account, follow this link \
             within {hours} hours:\n\n{link}\n\nIf you did not sign up, ignore this mail: \
             the account stays unusable, and the address can be signed up for again once the \
             link expires.",
            hours = self.verification_ttl_secs / 3600,
            link = self.outbox.link("verify-email", &token),
        );
        let taken = format!(
            "Someone tried to sign up with your address {email}, which already has an \
             account. If it was you, log in, or ask for a password reset; if not, ignore this \
             mail: nothing changed.",
            email = email.as_str(),
        );
        let audit = AuditEntry::new(AuditEvent::SignedUp, Actor::Anonymous)
            .email(email.as_str())
            .client(client);
        let (users, outbox) = (self.users.clone(), self.outbox.clone());
        let expires_at = now.saturating_add(self.verification_ttl_secs);
        let token_hash = hash_secret(&token);
        // Answered before this work is done, so that the answer's timing cannot tell a new
        // address from a taken one (the hashing above is the same for both). A failure is
        // logged; the client, told 202, signs up again when no mail comes.
        let work = request_context::carried(move || {
            let user = NewUserRow {
                name: &name.0,
                email: email.as_str(),
                hashed_password: &hashed,
                security_stamp: &random_id(),
                role: Role::Reader.as_str(),
                email_verified: false,
            };
            let welcome = OutgoingMail {
                to: email.as_str(),
                subject: "Verify your address",
                body: &welcome,
            };
            let taken = OutgoingMail {
                to: email.as_str(),
                subject: "Someone tried to sign up with your address",
                body: &taken,
            };
            let signed_up = users.sign_up(
                &user,
                &token_hash,
                expires_at,
                now,
                &outbox,
                &welcome,
                &taken,
                &audit,
            );
            match signed_up {
                Ok(_) => outbox.wake_sender(),
                Err(error) => {
                    log::error!("a sign-up was not recorded: {}", crate::error_chain(&error))
                }
            }
        });
        drop(tokio::task::spawn_blocking(work));
        Ok(())
    }

    /// Spends one request of `budget` (sign-ups', resets') for `account` from `client`:
    /// every request counts, none is given back.
    async fn spend(
        &self,
        budget: &Arc<dyn LoginBudget>,
        account: &str,
        client: IpAddr,
    ) -> Result<(), LoginError> {
        let attempt = self.budget_keys.attempt(account, client);
        if !budget.blocks() {
            budget.reserve(&attempt, None)?;
            return Ok(());
        }
        let budget = Arc::clone(budget);
        blocking(move || Ok(budget.reserve(&attempt, None).map(drop))).await??;
        Ok(())
    }

    /// Whether `POST /password-reset` mails reset links (`auth.password_reset`).
    pub fn password_reset_on(&self) -> bool {
        self.password_reset == PasswordReset::On
    }

    /// A password-reset request: a mail with a single-use link (valid
    /// `auth.reset_ttl_minutes`, replacing any earlier one) when `email` has an account,
    /// nothing but an audit record when it has not. The answer, its timing and the database
    /// work are the same either way (one transaction that writes the audit trail), and each
    /// request spends the client network's and the address's own buckets
    /// (`auth.reset_*`), never the login budget.
    pub async fn request_password_reset(
        &self,
        email: String,
        client: IpAddr,
    ) -> Result<(), LoginError> {
        let email = Email::parse(&email).map_err(|e| LoginError::Service(e.into()))?;
        self.spend(&self.reset_budget, email.as_str(), client)
            .await?;
        let token = random_secret();
        let body = format!(
            "To choose a new password for your account {email}, follow this link within \
             {minutes} minutes:\n\n{link}\n\nIt works once, and a newer request replaces it. \
             Choosing a new password ends every session of the account. If you did not ask \
             for this, ignore this mail: nothing changes.",
            email = email.as_str(),
            minutes = self.reset_ttl_secs / 60,
            link = self.outbox.link("reset-password", &token),
        );
        let audit = AuditEntry::new(AuditEvent::PasswordResetRequested, Actor::Anonymous)
            .email(email.as_str())
            .client(client);
        let unknown = AuditEntry::new(AuditEvent::PasswordResetRequested, Actor::Anonymous)
            .unknown_subject(self.username_digest(email.as_str()))
            .client(client);
        let (users, outbox) = (self.users.clone(), self.outbox.clone());
        let (token_hash, expires_at) = (
            hash_secret(&token),
            unix_now().saturating_add(self.reset_ttl_secs),
        );
        // Answered before this work is done, so that the answer's timing cannot depend on
        // it. A failure is logged; the client, told 202, asks again when no mail comes.
        let work = request_context::carried(move || {
            let recorded = users.request_reset(
                email.as_str(),
                &token_hash,
                expires_at,
                &outbox,
                "Reset your password",
                &body,
                &audit,
                &unknown,
            );
            if let Err(error) = recorded {
                log::error!(
                    "a password reset request was not recorded: {}",
                    crate::error_chain(&error)
                );
            }
        });
        // Not awaited; nor is the sender woken, which would slow the client's next request
        // only when this one mailed. It sends within its next look (a second).
        drop(tokio::task::spawn_blocking(work));
        Ok(())
    }

    /// Sets the password of the account whose reset mail carried `token`, ends all its
    /// sessions and verifies its address; `false` for a token that is unknown, used,
    /// replaced or expired.
    pub async fn confirm_password_reset(
        &self,
        token: String,
        new_password: String,
    ) -> Result<bool, LoginError> {
        let new = self.parse_password(new_password).map_err(|invalid| {
            LoginError::Service(ServiceError::invalid("new_password", invalid.message))
        })?;
        // A token that is no good costs no hashing: made-up tokens cannot fill the threads.
        let token_hash = hash_secret(&token);
        let (users, looked_up) = (self.users.clone(), token_hash.clone());
        if !blocking(move || users.reset_token_live(&looked_up, unix_now())).await? {
            return Ok(false);
        }
        let ticket = self.hashing.try_admit().ok_or(LoginError::Saturated {
            retry_after_secs: super::BUSY_RETRY_AFTER_SECS,
        })?;
        let hasher = self.hasher.clone();
        let new_hash = ticket.run(move || hasher.hash(&new.0)).await??;
        let (users, outbox) = (self.users.clone(), self.outbox.clone());
        let audit = AuditEntry::new(AuditEvent::PasswordResetCompleted, Actor::Anonymous);
        let done = blocking(move || {
            users.confirm_reset(
                &token_hash,
                &new_hash,
                &random_id(),
                unix_now(),
                &outbox,
                "Your password was reset",
                "The password of your account was reset with the link we mailed, and every \
                 session of the account has ended. If you did not do this, ask an \
                 administrator for help at once.",
                &audit,
            )
        })
        .await?;
        if done {
            self.outbox.wake_sender();
        }
        Ok(done)
    }

    /// Verifies the address of the account whose sign-up mail carried `token`, and uses the
    /// token up; `false` for a token that is unknown, used, replaced or expired.
    pub async fn verify_email(&self, token: String) -> Result<bool, ServiceError> {
        let users = self.users.clone();
        let audit = AuditEntry::new(AuditEvent::EmailVerified, Actor::Anonymous);
        let token_hash = hash_secret(&token);
        blocking(move || users.verify_email(&token_hash, unix_now(), &audit)).await
    }
}

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
                self.cancel_reservation(reservation).await;
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

//! Every query the auth service makes, and nothing else: users ([`UserDataManager`]) and
//! refresh-token families ([`SessionDataManager`]).

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use myapi_models::rows::{AccountTokenRow, NewUserRow, RefreshFamilyRow, RefreshTokenRow, UserRow};
use myapi_models::schema::{account_tokens, refresh_families, refresh_tokens, users};

use crate::ServiceError;
use crate::audit::{AuditEntry, AuditEvent, record};
use crate::database::{Database, write_transaction};
use crate::error::is_unique_violation;
use crate::hooks::{Hooks, Point};
use crate::mail::{MailOutbox, OutgoingMail};

/// Queries on `users`. Each method checks out its own pooled connection.
#[derive(Debug, Clone)]
pub struct UserDataManager {
    db: Database,
}

impl UserDataManager {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Inserts a user and records `audit` with it; a duplicate email (in any case) is a
    /// [`ServiceError::Conflict`].
    pub fn insert(
        &self,
        user: &NewUserRow<'_>,
        audit: &AuditEntry,
    ) -> Result<UserRow, ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction(|conn| {
            let inserted = diesel::insert_into(users::table).values(user).execute(conn);
            match inserted {
                Err(e) if is_unique_violation(&e) => Err(ServiceError::Conflict(format!(
                    "a user with email {} already exists",
                    user.email
                ))),
                Err(e) => Err(e.into()),
                Ok(_) => {
                    // RETURNING is not available across both backends through MultiConnection.
                    let row = users::table
                        .filter(users::email.eq(user.email))
                        .select(UserRow::as_select())
                        .first(conn)?;
                    record(conn, audit)?;
                    Ok(row)
                }
            }
        })
    }

    /// The user with this (lower-case) email, if any.
    pub fn find_by_email(&self, email: &str) -> Result<Option<UserRow>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(users::table
            .filter(users::email.eq(email))
            .select(UserRow::as_select())
            .first(&mut conn)
            .optional()?)
    }

    pub fn find_by_id(&self, user_id: i32) -> Result<Option<UserRow>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(users::table
            .find(user_id)
            .select(UserRow::as_select())
            .first(&mut conn)
            .optional()?)
    }

    /// All users, by id.
    pub fn list(&self) -> Result<Vec<UserRow>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(users::table
            .order(users::user_id)
            .select(UserRow::as_select())
            .load(&mut conn)?)
    }

    /// One page of users, by id.
    pub fn page(&self, limit: i64, offset: i64) -> Result<Vec<UserRow>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(users::table
            .order(users::user_id)
            .limit(limit)
            .offset(offset)
            .select(UserRow::as_select())
            .load(&mut conn)?)
    }

    /// Sets the role and records `audit` with `old -> new` as its detail; `false` when there
    /// is no user with this email.
    pub fn set_role(
        &self,
        email: &str,
        role: &str,
        audit: &AuditEntry,
    ) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction(|conn| {
            let old: Option<String> = users::table
                .filter(users::email.eq(email))
                .select(users::role)
                .first(conn)
                .optional()?;
            let updated = diesel::update(users::table.filter(users::email.eq(email)))
                .set(users::role.eq(role))
                .execute(conn)?;
            if let (Some(old), true) = (old, updated > 0) {
                record(conn, &audit.clone().detail(format!("{old} -> {role}")))?;
            }
            Ok(updated > 0)
        })
    }

    /// Deletes the user with this email and records `audit` about them; `false` when there
    /// was none.
    pub fn delete_by_email(&self, email: &str, audit: &AuditEntry) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction(|conn| {
            let Some(user_id) = crate::audit::user_id_of(conn, email)? else {
                return Ok(false);
            };
            let deleted =
                diesel::delete(users::table.filter(users::email.eq(email))).execute(conn)? > 0;
            if deleted {
                record(conn, &audit.clone().user_id(user_id).email(email))?;
            }
            Ok(deleted)
        })
    }

    /// Sets a new password hash and security stamp, which revokes older access tokens, and
    /// revokes every refresh-token family of the user, all at once, with `audit`.
    pub fn set_password(
        &self,
        email: &str,
        hashed_password: &str,
        security_stamp: &str,
        now: i64,
        audit: &AuditEntry,
    ) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction(|conn| {
            let updated = diesel::update(users::table.filter(users::email.eq(email)))
                .set((
                    users::hashed_password.eq(hashed_password),
                    users::security_stamp.eq(security_stamp),
                ))
                .execute(conn)?;
            revoke_families_of(conn, email, now)?;
            if updated > 0 {
                record(conn, audit)?;
            }
            Ok(updated > 0)
        })
    }

    /// A sign-up, in one transaction. For a new address: the unverified user, its
    /// verification token (`token_hash`, until `expires_at`) and the `welcome` mail. For an
    /// unverified account whose token has expired (or was used up): the same, over the old
    /// account (its name, password and stamp replaced), so an address cannot be squatted.
    /// Otherwise, the address is taken: only the `taken` mail, to its owner. `audit` is
    /// recorded either way.
    #[allow(clippy::too_many_arguments)]
    pub fn sign_up(
        &self,
        user: &NewUserRow<'_>,
        token_hash: &str,
        expires_at: i64,
        now: i64,
        outbox: &MailOutbox,
        welcome: &OutgoingMail<'_>,
        taken: &OutgoingMail<'_>,
        audit: &AuditEntry,
    ) -> Result<SignUp, ServiceError> {
        let mut conn = self.db.conn()?;
        let outcome = write_transaction(&mut conn, |conn| {
            let existing = users::table
                .filter(users::email.eq(user.email))
                .select(UserRow::as_select())
                .first(conn)
                .optional()?;
            let (user_id, outcome) = match existing {
                None => {
                    let inserted = diesel::insert_into(users::table).values(user).execute(conn);
                    if let Err(error) = &inserted
                        && is_unique_violation(error)
                    {
                        return Err(ServiceError::Conflict("address taken meanwhile".into()));
                    }
                    inserted?;
                    let user_id = users::table
                        .filter(users::email.eq(user.email))
                        .select(users::user_id)
                        .first(conn)?;
                    (user_id, SignUp::Created)
                }
                Some(row)
                    if !row.email_verified && !has_live_token(conn, row.user_id, VERIFY, now)? =>
                {
                    diesel::update(users::table.find(row.user_id))
                        .set((
                            users::name.eq(user.name),
                            users::hashed_password.eq(user.hashed_password),
                            users::security_stamp.eq(user.security_stamp),
                        ))
                        .execute(conn)?;
                    (row.user_id, SignUp::Renewed)
                }
                Some(row) => {
                    outbox.enqueue(conn, taken)?;
                    record(
                        conn,
                        &audit
                            .clone()
                            .user_id(row.user_id)
                            .detail("address already taken"),
                    )?;
                    return Ok(SignUp::Taken);
                }
            };
            replace_token(conn, user_id, VERIFY, token_hash, expires_at)?;
            outbox.enqueue(conn, welcome)?;
            record(conn, &audit.clone().user_id(user_id))?;
            Ok(outcome)
        });
        match outcome {
            // Two sign-ups for one new address at once: the other made the account.
            Err(ServiceError::Conflict(_)) => Ok(SignUp::Taken),
            other => other,
        }
    }

    /// Uses the verification token `token_hash`: the account is verified, and the token
    /// gone. `false` for a token that is unknown, used, replaced or expired (an expired one
    /// is deleted).
    pub fn verify_email(
        &self,
        token_hash: &str,
        now: i64,
        audit: &AuditEntry,
    ) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        write_transaction(&mut conn, |conn| {
            let Some(token) = take_token(conn, token_hash, VERIFY, now)? else {
                return Ok(false);
            };
            diesel::update(users::table.find(token.user_id))
                .set(users::email_verified.eq(true))
                .execute(conn)?;
            record(conn, &audit.clone().user_id(token.user_id))?;
            Ok(true)
        })
    }

    /// A password-reset request, in one transaction: for an account with this (lower-case)
    /// email, its reset token replaced by `token_hash` (until `expires_at`), the mail
    /// (`subject`, `body`) queued and `audit` recorded about it; for an address without
    /// one, `unknown` recorded. The statements are the same either way (deletes and
    /// inserts of what a select of the account finds, then one audit row), so the work, and
    /// the time it takes, do not tell whether the address has an account.
    #[allow(clippy::too_many_arguments)]
    pub fn request_reset(
        &self,
        email: &str,
        token_hash: &str,
        expires_at: i64,
        outbox: &MailOutbox,
        subject: &str,
        body: &str,
        audit: &AuditEntry,
        unknown: &AuditEntry,
    ) -> Result<(), ServiceError> {
        let mut conn = self.db.conn()?;
        write_transaction(&mut conn, |conn| {
            let account = || {
                users::table
                    .filter(users::email.eq(email))
                    .select(users::user_id)
            };
            diesel::delete(
                account_tokens::table
                    .filter(account_tokens::purpose.eq(RESET))
                    .filter(account_tokens::user_id.eq_any(account())),
            )
            .execute(conn)?;
            let issued = diesel::insert_into(account_tokens::table)
                .values(users::table.filter(users::email.eq(email)).select((
                    token_hash.into_sql::<Text>(),
                    users::user_id,
                    RESET.into_sql::<Text>(),
                    expires_at.into_sql::<BigInt>(),
                )))
                .into_columns((
                    account_tokens::token_hash,
                    account_tokens::user_id,
                    account_tokens::purpose,
                    account_tokens::expires_at,
                ))
                .execute(conn)?;
            outbox.enqueue_to_account(conn, email, subject, body)?;
            record(conn, if issued == 1 { audit } else { unknown })
        })
    }

    /// Whether `token_hash` is a reset token that has not expired; uses nothing.
    pub fn reset_token_live(&self, token_hash: &str, now: i64) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(diesel::select(diesel::dsl::exists(
            account_tokens::table
                .find(token_hash)
                .filter(account_tokens::purpose.eq(RESET))
                .filter(account_tokens::expires_at.gt(now)),
        ))
        .get_result(&mut conn)?)
    }

    /// Uses the reset token `token_hash`, in one transaction: the new hash and stamp (so
    /// every access token ends), every refresh-token family revoked, the address verified
    /// (the mail came back), a mail to say so (`subject`, `body`) and `audit`. `false` for a
    /// token that is unknown, used, replaced or expired (an expired one is deleted).
    #[allow(clippy::too_many_arguments)]
    pub fn confirm_reset(
        &self,
        token_hash: &str,
        new_hash: &str,
        new_stamp: &str,
        now: i64,
        outbox: &MailOutbox,
        subject: &str,
        body: &str,
        audit: &AuditEntry,
    ) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        write_transaction(&mut conn, |conn| {
            let Some(token) = take_token(conn, token_hash, RESET, now)? else {
                return Ok(false);
            };
            diesel::update(users::table.find(token.user_id))
                .set((
                    users::hashed_password.eq(new_hash),
                    users::security_stamp.eq(new_stamp),
                    users::email_verified.eq(true),
                ))
                .execute(conn)?;
            revoke_families_of_user(conn, token.user_id, now)?;
            let email: String = users::table
                .find(token.user_id)
                .select(users::email)
                .first(conn)?;
            let mail = OutgoingMail {
                to: &email,
                subject,
                body,
            };
            outbox.enqueue(conn, &mail)?;
            record(conn, &audit.clone().user_id(token.user_id).email(&email))?;
            Ok(true)
        })
    }

    /// Replaces an outdated hash of the same password, unless the password changed meanwhile.
    pub fn upgrade_hash(
        &self,
        user_id: i32,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<(), ServiceError> {
        let mut conn = self.db.conn()?;
        diesel::update(
            users::table
                .find(user_id)
                .filter(users::hashed_password.eq(old_hash)),
        )
        .set(users::hashed_password.eq(new_hash))
        .execute(&mut conn)?;
        Ok(())
    }
}

/// The `purpose` of a sign-up's verification token.
const VERIFY: &str = "verify";
/// The `purpose` of a password reset's token.
const RESET: &str = "reset";

/// Gives `user_id` the `purpose` token `token_hash`, in place of any it had.
fn replace_token(
    conn: &mut myapi_models::DbConnection,
    user_id: i32,
    purpose: &str,
    token_hash: &str,
    expires_at: i64,
) -> QueryResult<()> {
    diesel::delete(
        account_tokens::table
            .filter(account_tokens::user_id.eq(user_id))
            .filter(account_tokens::purpose.eq(purpose)),
    )
    .execute(conn)?;
    diesel::insert_into(account_tokens::table)
        .values(&AccountTokenRow {
            token_hash: token_hash.to_owned(),
            user_id,
            purpose: purpose.to_owned(),
            expires_at,
        })
        .execute(conn)?;
    Ok(())
}

/// Deletes the `purpose` token `token_hash` and returns it, unless it is unknown or has
/// expired (deleted all the same).
fn take_token(
    conn: &mut myapi_models::DbConnection,
    token_hash: &str,
    purpose: &str,
    now: i64,
) -> QueryResult<Option<AccountTokenRow>> {
    let this_token = account_tokens::table
        .find(token_hash)
        .filter(account_tokens::purpose.eq(purpose));
    let Some(token) = this_token
        .select(AccountTokenRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    // Of two transactions that read the token, only the one whose delete removed it may
    // use it (PostgreSQL lets the other read it first, then delete nothing).
    let taken = diesel::delete(this_token).execute(conn)? == 1;
    Ok((taken && token.expires_at > now).then_some(token))
}

/// What a sign-up did: the mail it queued says the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignUp {
    Created,
    /// An unverified account whose verification had expired, made again.
    Renewed,
    /// The address belongs to another account: its owner is told.
    Taken,
}

/// Whether `user_id` holds a `purpose` token that has not expired.
fn has_live_token(
    conn: &mut myapi_models::DbConnection,
    user_id: i32,
    purpose: &str,
    now: i64,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        account_tokens::table
            .filter(account_tokens::user_id.eq(user_id))
            .filter(account_tokens::purpose.eq(purpose))
            .filter(account_tokens::expires_at.gt(now)),
    ))
    .get_result(conn)
}

/// What presenting a refresh token did. `decided` is what the caller's check returned for
/// the token's user and family, inside the transaction that used the token.
#[derive(Debug, Clone)]
pub enum Rotation<T> {
    /// The token was current: it is now used, and its successor joined the family.
    Rotated { user: UserRow, decided: T },
    /// The token was rotated less than the reuse grace ago, and the successor it got then
    /// is still unused: the same request again (a double submit).
    Repeated {
        user: UserRow,
        decided: T,
        successor_hash: String,
        successor_sealed: String,
    },
    /// The token was rotated before, past the grace or with its successor used since.
    Reused { family_id: String, user_id: i32 },
    /// Unknown, expired, of a revoked family, of a session past its lifetime, or of a
    /// family whose user has another security stamp since.
    Refused,
}

/// The token a rotation hands out: its hash, itself sealed under the used token, and the
/// times that bound it.
#[derive(Debug, Clone)]
pub struct Successor {
    pub hash: String,
    pub sealed: String,
    /// Unix seconds now, as the whole rotation sees it.
    pub now: i64,
    pub lifetime_secs: i64,
    /// No token of a family lives past the family's start plus this.
    pub session_max_secs: i64,
    /// A used token shown again less than this long after its rotation is a double
    /// submit, not reuse.
    pub grace_secs: i64,
}

/// Ends a transaction early and rolls it back: the token is no good, the caller's check
/// refused, or a query failed.
enum Abort<E> {
    Refused,
    Decided(E),
    Query(diesel::result::Error),
}

impl<E> From<diesel::result::Error> for Abort<E> {
    fn from(error: diesel::result::Error) -> Self {
        Self::Query(error)
    }
}

/// Queries on `refresh_families` and `refresh_tokens`. Times are Unix seconds.
#[derive(Debug, Clone)]
pub struct SessionDataManager {
    db: Database,
    hooks: Hooks,
}

impl SessionDataManager {
    pub fn new(db: Database, hooks: Hooks) -> Self {
        Self { db, hooks }
    }

    /// Starts a family with its first token and records `audit` (the login) with it, unless its user's security stamp is no
    /// longer `family.security_stamp` (`false`: the password changed while the login
    /// checked it). A change that commits after this statement read the user leaves a
    /// family bound to the old stamp, which [`SessionDataManager::rotate`] refuses.
    pub fn start(
        &self,
        family: &RefreshFamilyRow,
        token: &RefreshTokenRow,
        audit: &AuditEntry,
    ) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction(|conn| {
            let started = diesel::insert_into(refresh_families::table)
                .values(
                    users::table
                        .filter(users::user_id.eq(family.user_id))
                        .filter(users::security_stamp.eq(&family.security_stamp))
                        .select((
                            family.family_id.as_str().into_sql::<Text>(),
                            users::user_id,
                            family.scope.as_str().into_sql::<Text>(),
                            family.created_at.into_sql::<BigInt>(),
                            users::security_stamp,
                            family.client_id.as_str().into_sql::<Text>(),
                        )),
                )
                .into_columns((
                    refresh_families::family_id,
                    refresh_families::user_id,
                    refresh_families::scope,
                    refresh_families::created_at,
                    refresh_families::security_stamp,
                    refresh_families::client_id,
                ))
                .execute(conn)?;
            if started == 0 {
                return Ok(false);
            }
            diesel::insert_into(refresh_tokens::table)
                .values(token)
                .execute(conn)?;
            record(conn, audit)?;
            Ok(true)
        })
    }

    /// Uses the token `token_hash` and adds `next` to its family, if the token is current
    /// and `decide` (given the user and family as this transaction sees them) agrees. A
    /// refusal by `decide`, a stamp changed meanwhile, or any failed query rolls
    /// everything back: the token stays current. Of two rotations of one token racing each
    /// other, exactly one sees [`Rotation::Rotated`]: the first statement is a conditional
    /// update, which both backends serialise, and the loser then sees
    /// [`Rotation::Repeated`] (within `next.grace_secs`) or [`Rotation::Reused`].
    pub fn rotate<T, E: From<ServiceError>>(
        &self,
        token_hash: &str,
        next: &Successor,
        decide: impl Fn(&UserRow, &RefreshFamilyRow) -> Result<T, E>,
    ) -> Result<Rotation<T>, E> {
        let now = next.now;
        let oldest_live = now.saturating_sub(next.session_max_secs);
        let mut conn = self.db.conn()?;
        let rotated = conn.transaction(|conn| {
            let live_families = refresh_families::table
                .inner_join(users::table)
                .filter(refresh_families::revoked_at.is_null())
                .filter(refresh_families::security_stamp.eq(users::security_stamp))
                .filter(refresh_families::created_at.gt(oldest_live))
                .select(refresh_families::family_id);
            let claimed = diesel::update(
                refresh_tokens::table
                    .filter(refresh_tokens::token_hash.eq(token_hash))
                    .filter(refresh_tokens::used_at.is_null())
                    .filter(refresh_tokens::expires_at.gt(now))
                    .filter(refresh_tokens::family_id.eq_any(live_families)),
            )
            .set((
                refresh_tokens::used_at.eq(now),
                refresh_tokens::successor_hash.eq(&next.hash),
                refresh_tokens::successor_sealed.eq(&next.sealed),
            ))
            .execute(conn)?;
            self.hooks.reach(Point::RefreshClaimed);
            // On PostgreSQL this statement sees what committed since the update: a password
            // change in between shows here, and `live` turns the rotation down.
            let found: Option<(RefreshTokenRow, RefreshFamilyRow, UserRow)> = refresh_tokens::table
                .inner_join(refresh_families::table.inner_join(users::table))
                .filter(refresh_tokens::token_hash.eq(token_hash))
                .select((
                    RefreshTokenRow::as_select(),
                    RefreshFamilyRow::as_select(),
                    UserRow::as_select(),
                ))
                .first(conn)
                .optional()?;
            let Some((token, family, user)) = found else {
                return Err(Abort::Refused);
            };
            if !is_live(&family, &user, oldest_live) {
                return Err(Abort::Refused);
            }
            if claimed == 1 {
                let decided = decide(&user, &family).map_err(Abort::Decided)?;
                diesel::insert_into(refresh_tokens::table)
                    .values(&RefreshTokenRow {
                        token_hash: next.hash.clone(),
                        family_id: family.family_id,
                        created_at: now,
                        expires_at: now
                            .saturating_add(next.lifetime_secs)
                            .min(family.created_at.saturating_add(next.session_max_secs)),
                        used_at: None,
                        successor_hash: None,
                        successor_sealed: None,
                    })
                    .execute(conn)?;
                // The token before this one no longer needs to answer a double submit.
                diesel::update(
                    refresh_tokens::table.filter(refresh_tokens::successor_hash.eq(token_hash)),
                )
                .set(refresh_tokens::successor_sealed.eq(None::<String>))
                .execute(conn)?;
                return Ok(Rotation::Rotated { user, decided });
            }
            let Some(used_at) = token.used_at else {
                return Err(Abort::Refused);
            };
            let within_grace = now.saturating_sub(used_at) < next.grace_secs;
            let successor_current = match (&token.successor_hash, within_grace) {
                (Some(successor), true) => {
                    refresh_tokens::table
                        .filter(refresh_tokens::token_hash.eq(successor))
                        .filter(refresh_tokens::used_at.is_null())
                        .filter(refresh_tokens::expires_at.gt(now))
                        .count()
                        .get_result::<i64>(conn)?
                        > 0
                }
                _ => false,
            };
            match (
                successor_current,
                token.successor_hash,
                token.successor_sealed,
            ) {
                (true, Some(successor_hash), Some(successor_sealed)) => {
                    let decided = decide(&user, &family).map_err(Abort::Decided)?;
                    Ok(Rotation::Repeated {
                        user,
                        decided,
                        successor_hash,
                        successor_sealed,
                    })
                }
                _ => Ok(Rotation::Reused {
                    family_id: family.family_id,
                    user_id: user.user_id,
                }),
            }
        });
        match rotated {
            Ok(rotation) => Ok(rotation),
            Err(Abort::Refused) => Ok(Rotation::Refused),
            Err(Abort::Decided(refusal)) => Err(refusal),
            Err(Abort::Query(error)) => Err(E::from(ServiceError::from(error))),
        }
    }

    /// The user `user_id`, if they exist, and whether `family_id` is one of their sessions
    /// that has not been revoked (`true` when there is none to check: tokens from before
    /// tokens named their session). A purged family is not live either.
    pub fn session_holder(
        &self,
        user_id: i32,
        family_id: Option<&str>,
    ) -> Result<Option<(UserRow, bool)>, ServiceError> {
        let mut conn = self.db.conn()?;
        let Some(user) = users::table
            .find(user_id)
            .select(UserRow::as_select())
            .first(&mut conn)
            .optional()?
        else {
            return Ok(None);
        };
        let live = match family_id {
            None => true,
            Some(family_id) => diesel::select(diesel::dsl::exists(
                refresh_families::table
                    .find(family_id)
                    .filter(refresh_families::user_id.eq(user_id))
                    .filter(refresh_families::revoked_at.is_null()),
            ))
            .get_result(&mut conn)?,
        };
        Ok(Some((user, live)))
    }

    /// A refresh token with its family and user, if the token is known.
    pub fn refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<(RefreshTokenRow, RefreshFamilyRow, UserRow)>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(refresh_tokens::table
            .inner_join(refresh_families::table.inner_join(users::table))
            .filter(refresh_tokens::token_hash.eq(token_hash))
            .select((
                RefreshTokenRow::as_select(),
                RefreshFamilyRow::as_select(),
                UserRow::as_select(),
            ))
            .first(&mut conn)
            .optional()?)
    }

    /// A user's change of their own password, in one transaction: the new hash and stamp
    /// (only while the stamp is still `checked_stamp`, the one the current password was
    /// checked under: a change meanwhile wins, and this one answers `false`), every family
    /// of the user revoked, `family` (bound to the new stamp) started with its `first`
    /// token for the session that asked, `mail` queued and `audit` recorded.
    #[allow(clippy::too_many_arguments)]
    pub fn change_password(
        &self,
        checked_stamp: &str,
        new_hash: &str,
        family: &RefreshFamilyRow,
        first: &RefreshTokenRow,
        outbox: &MailOutbox,
        mail: &OutgoingMail<'_>,
        audit: &AuditEntry,
    ) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        write_transaction(&mut conn, |conn| {
            let changed = diesel::update(
                users::table
                    .find(family.user_id)
                    .filter(users::security_stamp.eq(checked_stamp)),
            )
            .set((
                users::hashed_password.eq(new_hash),
                users::security_stamp.eq(&family.security_stamp),
            ))
            .execute(conn)?;
            if changed == 0 {
                return Ok(false);
            }
            revoke_families_of_user(conn, family.user_id, family.created_at)?;
            // A reset link mailed before the change must not undo it.
            diesel::delete(
                account_tokens::table
                    .filter(account_tokens::user_id.eq(family.user_id))
                    .filter(account_tokens::purpose.eq(RESET)),
            )
            .execute(conn)?;
            diesel::insert_into(refresh_families::table)
                .values(family)
                .execute(conn)?;
            diesel::insert_into(refresh_tokens::table)
                .values(first)
                .execute(conn)?;
            outbox.enqueue(conn, mail)?;
            record(conn, audit)?;
            Ok(true)
        })
    }

    /// The family of the token `token_hash` and its user, if the token is known.
    pub fn family_of(&self, token_hash: &str) -> Result<Option<(String, i32)>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(refresh_tokens::table
            .inner_join(refresh_families::table)
            .filter(refresh_tokens::token_hash.eq(token_hash))
            .select((refresh_families::family_id, refresh_families::user_id))
            .first(&mut conn)
            .optional()?)
    }

    /// Revokes the family, recording `cause` (what asked for it) and the revocation; `false`,
    /// recording nothing, when it was revoked already.
    pub fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
        cause: &AuditEntry,
    ) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction(|conn| {
            let revoked = diesel::update(
                refresh_families::table
                    .find(family_id)
                    .filter(refresh_families::revoked_at.is_null()),
            )
            .set(refresh_families::revoked_at.eq(now))
            .execute(conn)?
                > 0;
            if revoked {
                record(conn, cause)?;
                let revocation = cause
                    .with_event(AuditEvent::FamilyRevoked)
                    .detail(format!("family {family_id}"));
                record(conn, &revocation)?;
            }
            Ok(revoked)
        })
    }

    /// Revokes every family of the user with this email and gives the user `new_stamp`,
    /// which ends their access tokens and any login or refresh still in flight, with
    /// `audit`; `false` when there is no such user.
    pub fn revoke_user(
        &self,
        email: &str,
        new_stamp: &str,
        now: i64,
        audit: &AuditEntry,
    ) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction(|conn| {
            let updated = diesel::update(users::table.filter(users::email.eq(email)))
                .set(users::security_stamp.eq(new_stamp))
                .execute(conn)?;
            revoke_families_of(conn, email, now)?;
            if updated > 0 {
                record(conn, audit)?;
            }
            Ok(updated > 0)
        })
    }

    /// Deletes the families whose every token has expired, and the revoked ones. A used
    /// token stays as long as its family does, or reuse detection would forget it.
    /// Also forgets the sealed successors older than `grace_secs`, which can no longer
    /// answer a double submit.
    pub fn purge(&self, now: i64, grace_secs: i64) -> Result<usize, ServiceError> {
        let mut conn = self.db.conn()?;
        let live = refresh_tokens::table
            .filter(refresh_tokens::expires_at.gt(now))
            .select(refresh_tokens::family_id);
        conn.transaction(|conn| {
            let doomed: Vec<String> = refresh_families::table
                .filter(
                    refresh_families::revoked_at
                        .is_not_null()
                        .or(refresh_families::family_id.ne_all(live)),
                )
                .select(refresh_families::family_id)
                .load(conn)?;
            diesel::delete(refresh_tokens::table.filter(refresh_tokens::family_id.eq_any(&doomed)))
                .execute(conn)?;
            diesel::update(
                refresh_tokens::table
                    .filter(refresh_tokens::successor_sealed.is_not_null())
                    .filter(refresh_tokens::used_at.lt(now.saturating_sub(grace_secs))),
            )
            .set(refresh_tokens::successor_sealed.eq(None::<String>))
            .execute(conn)?;
            Ok(diesel::delete(
                refresh_families::table.filter(refresh_families::family_id.eq_any(&doomed)),
            )
            .execute(conn)?)
        })
    }
}

/// Whether a family can still refresh: not revoked, bound to its user's current security
/// stamp, and started after `oldest_live` (`auth.session_max_days` ago).
pub fn is_live(family: &RefreshFamilyRow, user: &UserRow, oldest_live: i64) -> bool {
    family.revoked_at.is_none()
        && family.security_stamp == user.security_stamp
        && family.created_at > oldest_live
}

/// Revokes every live refresh-token family of `user_id` at `now`: every session ends.
fn revoke_families_of_user(
    conn: &mut myapi_models::DbConnection,
    user_id: i32,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(
        refresh_families::table
            .filter(refresh_families::user_id.eq(user_id))
            .filter(refresh_families::revoked_at.is_null()),
    )
    .set(refresh_families::revoked_at.eq(now))
    .execute(conn)
}

fn revoke_families_of(
    conn: &mut myapi_models::DbConnection,
    email: &str,
    now: i64,
) -> Result<(), ServiceError> {
    let user_ids = users::table
        .filter(users::email.eq(email))
        .select(users::user_id);
    diesel::update(
        refresh_families::table
            .filter(refresh_families::user_id.eq_any(user_ids))
            .filter(refresh_families::revoked_at.is_null()),
    )
    .set(refresh_families::revoked_at.eq(now))
    .execute(conn)?;
    Ok(())
}

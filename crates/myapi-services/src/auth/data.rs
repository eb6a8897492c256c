//! Every query the auth service makes, and nothing else: users ([`UserDataManager`]) and
//! refresh-token families ([`SessionDataManager`]).

use diesel::prelude::*;
use myapi_models::rows::{NewUserRow, RefreshFamilyRow, RefreshTokenRow, UserRow};
use myapi_models::schema::{refresh_families, refresh_tokens, users};

use crate::ServiceError;
use crate::audit::{AuditEntry, AuditEvent, record};
use crate::database::Database;
use crate::error::is_unique_violation;

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

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is now used, and `next` joined its family.
    Rotated { user_id: i32, scope: String },
    /// The token was rotated before, at `used_at`.
    Reused {
        family_id: String,
        user_id: i32,
        used_at: i64,
    },
    /// Unknown, expired, or of a revoked family.
    Refused,
}

/// Queries on `refresh_families` and `refresh_tokens`. Times are Unix seconds.
#[derive(Debug, Clone)]
pub struct SessionDataManager {
    db: Database,
}

impl SessionDataManager {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Starts a family with its first token, and records `audit` (the login) with it.
    pub fn start(
        &self,
        family: &RefreshFamilyRow,
        token: &RefreshTokenRow,
        audit: &AuditEntry,
    ) -> Result<(), ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction(|conn| {
            diesel::insert_into(refresh_families::table)
                .values(family)
                .execute(conn)?;
            diesel::insert_into(refresh_tokens::table)
                .values(token)
                .execute(conn)?;
            record(conn, audit)?;
            Ok(())
        })
    }

    /// Marks the token `token_hash` used and adds `next` to its family, if the token is
    /// current. Of two rotations of one token racing each other, exactly one sees
    /// [`Rotation::Rotated`]: the first statement is a conditional update, which both
    /// backends serialise.
    pub fn rotate(
        &self,
        token_hash: &str,
        next_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<Rotation, ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction(|conn| {
            let live_families = refresh_families::table
                .filter(refresh_families::revoked_at.is_null())
                .select(refresh_families::family_id);
            let claimed = diesel::update(
                refresh_tokens::table
                    .filter(refresh_tokens::token_hash.eq(token_hash))
                    .filter(refresh_tokens::used_at.is_null())
                    .filter(refresh_tokens::expires_at.gt(now))
                    .filter(refresh_tokens::family_id.eq_any(live_families)),
            )
            .set(refresh_tokens::used_at.eq(now))
            .execute(conn)?;
            let found: Option<(RefreshTokenRow, RefreshFamilyRow)> = refresh_tokens::table
                .inner_join(refresh_families::table)
                .filter(refresh_tokens::token_hash.eq(token_hash))
                .select((RefreshTokenRow::as_select(), RefreshFamilyRow::as_select()))
                .first(conn)
                .optional()?;
            let Some((token, family)) = found else {
                return Ok(Rotation::Refused);
            };
            if claimed == 1 {
                diesel::insert_into(refresh_tokens::table)
                    .values(&RefreshTokenRow {
                        token_hash: next_hash.to_owned(),
                        family_id: family.family_id,
                        created_at: now,
                        expires_at,
                        used_at: None,
                    })
                    .execute(conn)?;
                return Ok(Rotation::Rotated {
                    user_id: family.user_id,
                    scope: family.scope,
                });
            }
            Ok(match (token.used_at, family.revoked_at) {
                (Some(used_at), None) => Rotation::Reused {
                    family_id: family.family_id,
                    user_id: family.user_id,
                    used_at,
                },
                _ => Rotation::Refused,
            })
        })
    }

    /// The scope granted to the family of the token `token_hash` (it never changes).
    pub fn family_scope(&self, token_hash: &str) -> Result<Option<String>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(refresh_tokens::table
            .inner_join(refresh_families::table)
            .filter(refresh_tokens::token_hash.eq(token_hash))
            .select(refresh_families::scope)
            .first(&mut conn)
            .optional()?)
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

    /// Revokes the family, recording `cause` (what asked for it) and, if the family was
    /// live until now, its revocation too; `false` when it was revoked already.
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
            record(conn, cause)?;
            if revoked {
                let revocation = cause
                    .with_event(AuditEvent::FamilyRevoked)
                    .detail(format!("family {family_id}"));
                record(conn, &revocation)?;
            }
            Ok(revoked)
        })
    }

    /// Revokes every family of the user with this email, with `audit`; `false` when there is
    /// no such user.
    pub fn revoke_user(
        &self,
        email: &str,
        now: i64,
        audit: &AuditEntry,
    ) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction(|conn| {
            let exists = users::table
                .filter(users::email.eq(email))
                .count()
                .get_result::<i64>(conn)?
                > 0;
            revoke_families_of(conn, email, now)?;
            if exists {
                record(conn, audit)?;
            }
            Ok(exists)
        })
    }

    /// Deletes the families whose every token has expired, and the revoked ones. A used
    /// token stays as long as its family does, or reuse detection would forget it.
    pub fn purge(&self, now: i64) -> Result<usize, ServiceError> {
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
            Ok(diesel::delete(
                refresh_families::table.filter(refresh_families::family_id.eq_any(&doomed)),
            )
            .execute(conn)?)
        })
    }
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

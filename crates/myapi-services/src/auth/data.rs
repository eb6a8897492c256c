//! `UserDataManager`: every query the auth service makes, and nothing else.

use diesel::prelude::*;
use myapi_models::rows::{NewUserRow, UserRow};
use myapi_models::schema::users;

use crate::ServiceError;
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

    /// Inserts a user; a duplicate email (in any case) is a [`ServiceError::Conflict`].
    pub fn insert(&self, user: &NewUserRow<'_>) -> Result<UserRow, ServiceError> {
        let mut conn = self.db.conn()?;
        let inserted = diesel::insert_into(users::table)
            .values(user)
            .execute(&mut conn);
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(ServiceError::Conflict(format!(
                "a user with email {} already exists",
                user.email
            ))),
            Err(e) => Err(e.into()),
            // RETURNING is not available across both backends through MultiConnection.
            Ok(_) => Ok(users::table
                .filter(users::email.eq(user.email))
                .select(UserRow::as_select())
                .first(&mut conn)?),
        }
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

    /// Deletes the user with this email; `false` when there was none.
    pub fn delete_by_email(&self, email: &str) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(diesel::delete(users::table.filter(users::email.eq(email))).execute(&mut conn)? > 0)
    }

    /// Sets a new password hash and security stamp (revoking older tokens).
    pub fn set_password(
        &self,
        email: &str,
        hashed_password: &str,
        security_stamp: &str,
    ) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        let updated = diesel::update(users::table.filter(users::email.eq(email)))
            .set((
                users::hashed_password.eq(hashed_password),
                users::security_stamp.eq(security_stamp),
            ))
            .execute(&mut conn)?;
        Ok(updated > 0)
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

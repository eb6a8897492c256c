//! Every query on `audit_events`, and nothing else.

use diesel::prelude::*;
use myapi_models::DbConnection;
use myapi_models::rows::{AuditEventRow, NewAuditEventRow};
use myapi_models::schema::{audit_events, users};

use crate::ServiceError;
use crate::database::Database;

/// Which events a read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Ids above this one (0: from the first).
    pub after: i64,
    /// At or after these Unix seconds.
    pub since: Option<i64>,
    /// About this user id ...
    pub subject_user_id: Option<i32>,
    /// ... or with this subject (an email): a deleted user's events are still found by it.
    pub subject: Option<String>,
    /// Of this event (its stored name).
    pub event: Option<&'static str>,
}

/// Queries on `audit_events`. Each method checks out its own pooled connection; [`insert`]
/// writes on the caller's, inside its transaction.
#[derive(Debug, Clone)]
pub struct AuditDataManager {
    db: Database,
}

impl AuditDataManager {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Runs `work` in a transaction on a pooled connection.
    pub(crate) fn in_transaction<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction(|conn| work(conn))
    }

    /// Adds `count` to the row of (`event`, `at`, `client`, `detail`), or inserts it. Two
    /// instances adding to one minute at once may each insert a row: the counts add up
    /// either way.
    pub fn add_count(&self, row: &NewAuditEventRow<'_>) -> Result<(), ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction(|conn| {
            let mut same = audit_events::table
                .filter(audit_events::event.eq(row.event))
                .filter(audit_events::at.eq(row.at))
                .select(audit_events::id)
                .into_boxed();
            same = match row.client {
                Some(client) => same.filter(audit_events::client.eq(client)),
                None => same.filter(audit_events::client.is_null()),
            };
            same = match row.detail {
                Some(detail) => same.filter(audit_events::detail.eq(detail)),
                None => same.filter(audit_events::detail.is_null()),
            };
            let existing: Option<i64> = same.order(audit_events::id).first(conn).optional()?;
            match existing {
                Some(id) => {
                    diesel::update(audit_events::table.find(id))
                        .set(audit_events::count.eq(audit_events::count + row.count))
                        .execute(conn)?;
                    Ok(())
                }
                None => insert(conn, row),
            }
        })
    }

    /// Up to `limit` events matching `filter`, by id.
    pub fn load(
        &self,
        filter: &AuditFilter,
        limit: Option<i64>,
    ) -> Result<Vec<AuditEventRow>, ServiceError> {
        let mut conn = self.db.conn()?;
        let mut query = audit_events::table
            .filter(audit_events::id.gt(filter.after))
            .select(AuditEventRow::as_select())
            .order(audit_events::id)
            .into_boxed();
        if let Some(since) = filter.since {
            query = query.filter(audit_events::at.ge(since));
        }
        query = match (filter.subject_user_id, &filter.subject) {
            (Some(id), Some(subject)) => query.filter(
                audit_events::subject_user_id
                    .eq(id)
                    .or(audit_events::subject.eq(subject.clone())),
            ),
            (Some(id), None) => query.filter(audit_events::subject_user_id.eq(id)),
            (None, Some(subject)) => query.filter(audit_events::subject.eq(subject.clone())),
            (None, None) => query,
        };
        if let Some(event) = filter.event {
            query = query.filter(audit_events::event.eq(event));
        }
        if let Some(limit) = limit {
            query = query.limit(limit);
        }
        Ok(query.load(&mut conn)?)
    }

    /// The id of the user with this (lower-case) email, if any.
    pub fn user_id_of(&self, email: &str) -> Result<Option<i32>, ServiceError> {
        let mut conn = self.db.conn()?;
        user_id_of(&mut conn, email)
    }

    /// Deletes the events before `before` (Unix seconds); returns how many went.
    pub fn purge(&self, before: i64) -> Result<usize, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(
            diesel::delete(audit_events::table.filter(audit_events::at.lt(before)))
                .execute(&mut conn)?,
        )
    }
}

pub(crate) fn insert(
    conn: &mut DbConnection,
    row: &NewAuditEventRow<'_>,
) -> Result<(), ServiceError> {
    diesel::insert_into(audit_events::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub(crate) fn user_id_of(
    conn: &mut DbConnection,
    email: &str,
) -> Result<Option<i32>, ServiceError> {
    Ok(users::table
        .filter(users::email.eq(email))
        .select(users::user_id)
        .first(conn)
        .optional()?)
}

pub(crate) fn email_of(
    conn: &mut DbConnection,
    user_id: i32,
) -> Result<Option<String>, ServiceError> {
    Ok(users::table
        .find(user_id)
        .select(users::email)
        .first(conn)
        .optional()?)
}

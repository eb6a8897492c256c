//! `__TYPE__DataManager`: every query the `__NAME__` service makes, and nothing else.

use diesel::prelude::*;
use myapi_models::rows::__TYPE__Row;
use myapi_models::schema::__NAME__;

use crate::ServiceError;
use crate::database::Database;

/// Each method checks out its own pooled connection.
#[derive(Debug, Clone)]
pub struct __TYPE__DataManager {
    db: Database,
}

impl __TYPE__DataManager {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// One page of rows, by id.
    pub fn list(&self, limit: i64, offset: i64) -> Result<Vec<__TYPE__Row>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(__NAME__::table
            .order(__NAME__::__ID__)
            .limit(limit)
            .offset(offset)
            .select(__TYPE__Row::as_select())
            .load(&mut conn)?)
    }

    pub fn find(&self, id: i32) -> Result<Option<__TYPE__Row>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(__NAME__::table
            .find(id)
            .select(__TYPE__Row::as_select())
            .first(&mut conn)
            .optional()?)
    }
}

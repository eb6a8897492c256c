//! The `__NAME__` service: listing and look-up by id.
//!
//! Blocking: every method that touches the database must run off the async workers.

mod data;

pub use data::__TYPE__DataManager;

use myapi_models::rows::__TYPE__Row;
use myapi_schemas::__TYPE__Schema;

use crate::ServiceError;
use crate::database::Database;
use crate::query::{Page, PageSizes};

/// `limit` when none is given, and the largest accepted.
pub const PAGE_SIZES: PageSizes = PageSizes {
    default: 100,
    max: 1000,
};

/// An id as a client sends it: any integer (one that no row has is simply not found).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct __TYPE__Id(pub i64);

#[derive(Debug, Clone)]
pub struct __TYPE__Service {
    data: __TYPE__DataManager,
}

impl __TYPE__Service {
    pub fn new(db: Database) -> Self {
        Self {
            data: __TYPE__DataManager::new(db),
        }
    }

    /// One page, ordered by id (blocking).
    pub fn list(&self, page: Page) -> Result<Vec<__TYPE__Schema>, ServiceError> {
        let rows = self.data.list(i64::from(page.limit), page.offset)?;
        Ok(rows.iter().map(to_schema).collect())
    }

    /// One by id (blocking).
    pub fn get(&self, __TYPE__Id(id): __TYPE__Id) -> Result<__TYPE__Schema, ServiceError> {
        let not_found = || ServiceError::NotFound(format!("__SINGULAR__ {id} not found"));
        let id = i32::try_from(id).map_err(|_| not_found())?;
        let row = self.data.find(id)?.ok_or_else(not_found)?;
        Ok(to_schema(&row))
    }
}

fn to_schema(row: &__TYPE__Row) -> __TYPE__Schema {
    __TYPE__Schema {
        __ID__: row.__ID__,
        name: row.name.clone(),
    }
}

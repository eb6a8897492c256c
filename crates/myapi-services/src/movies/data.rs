//! `MovieDataManager`: every query the movies service makes, and nothing else.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use myapi_models::rows::MovieRow;
use myapi_models::schema::movies;
use myapi_models::{BigDecimal, DbConnection};

use crate::ServiceError;
use crate::database::Database;

/// Rows per multi-row INSERT (4 parameters each; well under SQLite's and PostgreSQL's limits).
const INSERT_BATCH: usize = 1000;

/// What to do with CSV rows whose `movie_id` already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExisting {
    /// Abort the whole import.
    Fail,
    /// Keep the stored row, ignore the CSV row.
    Skip,
    /// Overwrite the stored row with the CSV row.
    Update,
}

/// Counts of what an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// New rows.
    pub inserted: usize,
    /// Existing rows overwritten.
    pub updated: usize,
    /// Existing rows left alone.
    pub skipped: usize,
}

/// Queries on `movies`. Each method checks out its own pooled connection.
#[derive(Debug, Clone)]
pub struct MovieDataManager {
    db: Database,
}

impl MovieDataManager {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn find(&self, movie_id: i32) -> Result<Option<MovieRow>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(movies::table
            .find(movie_id)
            .select(MovieRow::as_select())
            .first(&mut conn)
            .optional()?)
    }

    /// Movies released in or after `year` with at least `rating`, by id, one page.
    pub fn released_since(
        &self,
        year: i32,
        rating: &BigDecimal,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<MovieRow>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(movies::table
            .filter(movies::released.ge(year))
            .filter(movies::rating.ge(rating))
            .order(movies::movie_id)
            .limit(limit)
            .offset(offset)
            .select(MovieRow::as_select())
            .load(&mut conn)?)
    }

    /// Writes `rows` in one transaction: all of them or none.
    ///
    /// Rows whose id exists are handled per `on_existing`; with [`OnExisting::Fail`] the
    /// error names the existing ids. New rows go in with `COPY` on PostgreSQL and with
    /// multi-row `INSERT`s on SQLite.
    pub fn import(
        &self,
        rows: &[MovieRow],
        on_existing: OnExisting,
    ) -> Result<ImportCounts, ServiceError> {
        let mut conn = self.db.conn()?;
        conn.transaction::<_, ServiceError, _>(|conn| {
            if let DbConnection::Pg(pg) = &mut **conn {
                // A bulk import is an admin job: the request-sized statement timeout would cut
                // a large COPY short. SET LOCAL ends with the transaction.
                pg.batch_execute("SET LOCAL statement_timeout = 0")?;
            }
            let existing = existing_ids(conn, rows)?;
            if on_existing == OnExisting::Fail && !existing.is_empty() {
                return Err(ServiceError::Conflict(format!(
                    "{} movie_id(s) already exist ({}{}); import with skip or update to allow that",
                    existing.len(),
                    existing
                        .iter()
                        .take(10)
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    if existing.len() > 10 { ", …" } else { "" }
                )));
            }
            let (old, new): (Vec<&MovieRow>, Vec<&MovieRow>) = rows
                .iter()
                .partition(|row| existing.binary_search(&row.movie_id).is_ok());
            let mut counts = ImportCounts::default();
            if on_existing == OnExisting::Update {
                for row in &old {
                    diesel::update(movies::table.find(row.movie_id))
                        .set(*row)
                        .execute(conn)?;
                }
                counts.updated = old.len();
            } else {
                counts.skipped = old.len();
            }
            let new: Vec<MovieRow> = new.into_iter().cloned().collect();
            counts.inserted = insert_new(conn, &new)?;
            Ok(counts)
        })
    }
}

/// The ids of `rows` already in the table, sorted. PostgreSQL takes the ids as one array
/// parameter; SQLite gets them in chunks (it expands the list into parameters).
fn existing_ids(conn: &mut DbConnection, rows: &[MovieRow]) -> Result<Vec<i32>, ServiceError> {
    let ids: Vec<i32> = rows.iter().map(|row| row.movie_id).collect();
    let chunk_size = match conn {
        DbConnection::Pg(_) => ids.len().max(1),
        DbConnection::Sqlite(_) => INSERT_BATCH,
    };
    let mut existing = Vec::new();
    for chunk in ids.chunks(chunk_size) {
        let query = movies::table
            .filter(movies::movie_id.eq_any(chunk))
            .select(movies::movie_id);
        existing.extend(match conn {
            DbConnection::Pg(conn) => query.load::<i32>(conn)?,
            DbConnection::Sqlite(conn) => query.load::<i32>(conn)?,
        });
    }
    existing.sort_unstable();
    Ok(existing)
}

/// Inserts rows known to be new: one `COPY … FROM STDIN (FORMAT binary)` on PostgreSQL,
/// multi-row `INSERT`s on SQLite (MultiConnection has no batch insert of its own, so both
/// run on the inner connection, inside the caller's transaction).
fn insert_new(conn: &mut DbConnection, rows: &[MovieRow]) -> Result<usize, ServiceError> {
    if rows.is_empty() {
        return Ok(0);
    }
    Ok(match conn {
        DbConnection::Pg(conn) => diesel::copy_from(movies::table)
            .from_insertable(rows)
            .execute(conn)?,
        DbConnection::Sqlite(conn) => {
            let mut inserted = 0;
            for chunk in rows.chunks(INSERT_BATCH) {
                inserted += diesel::insert_into(movies::table)
                    .values(chunk)
                    .execute(conn)?;
            }
            inserted
        }
    })
}

//! `MovieDataManager`: every query the movies service makes, and nothing else.

use diesel::connection::SimpleConnection;
use diesel::dsl::max;
use diesel::pg::{Pg, PgQueryBuilder};
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryBuilder, QueryFragment, QueryId};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::Text;
use myapi_models::rows::{MovieRow, VersionedMovieRow};
use myapi_models::schema::{movie_changes, movies};
use myapi_models::{BigDecimal, DbConnection};

use crate::ServiceError;
use crate::database::{Database, write_transaction};
use crate::idempotency::{self, KeyedRequest, StoredResponse};

/// What `RETURNING` reads into a [`VersionedMovieRow`] (MultiConnection cannot return a
/// `Selectable`).
const VERSIONED_COLUMNS: (
    (
        movies::movie_id,
        movies::title,
        movies::released,
        movies::rating,
    ),
    movies::version,
) = (
    (
        movies::movie_id,
        movies::title,
        movies::released,
        movies::rating,
    ),
    movies::version,
);

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

    /// The counter the triggers raise on every committed change to `movies` (the
    /// listings' `ETag`).
    pub fn generation(&self) -> Result<i64, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(movie_changes::table
            .select(movie_changes::generation)
            .first(&mut conn)?)
    }

    pub fn find(&self, movie_id: i32) -> Result<Option<VersionedMovieRow>, ServiceError> {
        let mut conn = self.db.conn()?;
        Ok(movies::table
            .find(movie_id)
            .select(VersionedMovieRow::as_select())
            .first(&mut conn)
            .optional()?)
    }

    /// Inserts `row` under the next id after the largest (its own `movie_id` is ignored).
    ///
    /// The id is picked and used while holding the table's write lock ([`write_locked`]),
    /// which first waits for every other writer to finish, so it never collides with an id
    /// that `import`, plain SQL or a concurrent `insert` put in.
    pub fn insert(&self, row: &MovieRow) -> Result<VersionedMovieRow, ServiceError> {
        let mut conn = self.db.conn()?;
        write_locked(&mut conn, |conn| insert_next(conn, row))
    }

    /// [`Self::insert`] once per idempotency key: in one transaction, claims `request`'s
    /// key (see [`idempotency::claim`]; answers stored before `cutoff` are expired), and
    /// unless an answer is stored for it, inserts `row` and stores what `respond` makes of
    /// it. On PostgreSQL the key is claimed before the table's write lock is taken, so a
    /// repeat of a running request is refused at once rather than queued behind other
    /// writers; on SQLite the transaction is the only writer from its start, so a repeat
    /// waits for the first (at most the busy timeout, then 503) and gets its answer.
    pub fn insert_once(
        &self,
        row: &MovieRow,
        request: &KeyedRequest,
        cutoff: i64,
        respond: impl FnOnce(&VersionedMovieRow) -> Result<StoredResponse, ServiceError>,
    ) -> Result<StoredResponse, ServiceError> {
        let mut conn = self.db.conn()?;
        write_transaction(&mut conn, |conn| {
            if let Some(stored) = idempotency::claim(conn, request, cutoff)? {
                return Ok(stored);
            }
            lock_movies(conn)?;
            let response = respond(&insert_next(conn, row)?)?;
            idempotency::record(conn, request, &response)?;
            Ok(response)
        })
    }

    /// Overwrites movie `row.movie_id` if it is still at `version`, raising the version;
    /// `None` when it is not (changed or deleted meanwhile).
    pub fn update(
        &self,
        row: &MovieRow,
        version: i64,
    ) -> Result<Option<VersionedMovieRow>, ServiceError> {
        let mut conn = self.db.conn()?;
        // The trigger raises the version too; raising it here as well makes RETURNING show
        // the new one on SQLite, whose AFTER trigger runs after RETURNING is computed.
        diesel::update(
            movies::table
                .filter(movies::movie_id.eq(row.movie_id))
                .filter(movies::version.eq(version)),
        )
        .set((
            movies::title.eq(&row.title),
            movies::released.eq(row.released),
            movies::rating.eq(&row.rating),
            movies::version.eq(movies::version + 1),
        ))
        .returning(VERSIONED_COLUMNS)
        .get_result(&mut conn)
        .optional()
        .map_err(write_error)
    }

    /// Deletes movie `movie_id` if it is still at `version`; whether it did.
    pub fn delete(&self, movie_id: i32, version: i64) -> Result<bool, ServiceError> {
        let mut conn = self.db.conn()?;
        let deleted = diesel::delete(
            movies::table
                .filter(movies::movie_id.eq(movie_id))
                .filter(movies::version.eq(version)),
        )
        .execute(&mut conn)?;
        Ok(deleted == 1)
    }

    /// The movies `listing` selects, by id.
    ///
    /// On PostgreSQL the query is never a cached prepared statement: a prepared statement
    /// may switch, from its sixth execution on, to one generic plan for every value, chosen
    /// by the average cost of the plans made so far on that connection. After a few cheap
    /// or deep pages that plan walks the primary key and filters, far slower on a large table
    /// than the `(released, rating)` index for a selective filter. Sent unnamed, the query
    /// is planned for its own values every time; only this query pays for that planning
    /// (look-ups by id stay prepared).
    pub fn released_since(&self, listing: &Listing) -> Result<Vec<MovieRow>, ServiceError> {
        let mut conn = self.db.conn()?;
        page(&mut conn, listing)
    }

    /// The plan PostgreSQL uses for `listing` after it has run `executions_before` times on
    /// one pooled connection, as the service runs it, beside the plan it picks for the same
    /// query with the values written in. `None` on SQLite.
    ///
    /// For tests and diagnosis: a cached prepared statement would show the plan its next
    /// `EXECUTE` gets (generic or custom, PostgreSQL's choice); an unnamed one is planned
    /// afresh with its values, so `EXPLAIN` of it with the same binds is that plan.
    pub fn released_since_plans(
        &self,
        listing: &Listing,
        executions_before: u32,
    ) -> Result<Option<ListingPlans>, ServiceError> {
        let mut conn = self.db.conn()?;
        for _ in 0..executions_before {
            page(&mut conn, listing)?;
        }
        let DbConnection::Pg(pg) = &mut *conn else {
            return Ok(None);
        };
        let mut builder = PgQueryBuilder::new();
        Uncached(listing_query!(listing)).to_sql(&mut builder, &Pg)?;
        let sql = builder.finish();
        let values = [
            listing.year.to_string(),
            listing.min_rating.to_string(),
            listing.after.to_string(),
            listing.limit.to_string(),
            listing.offset.to_string(),
        ];
        let prepared: Option<String> =
            diesel::sql_query("SELECT name FROM pg_prepared_statements WHERE statement = $1")
                .bind::<Text, _>(&sql)
                .get_result::<PreparedName>(pg)
                .optional()?
                .map(|found| found.name);
        let served = match &prepared {
            Some(name) => explain(
                pg,
                &format!("EXPLAIN EXECUTE \"{name}\"({})", values.join(", ")),
            )?,
            None => Explain(Uncached(listing_query!(listing)))
                .load::<String>(pg)?
                .join("\n"),
        };
        // `$10` would contain `$1`: replace the highest placeholders first.
        let literal = values
            .iter()
            .enumerate()
            .rev()
            .fold(sql, |sql, (index, value)| {
                sql.replace(&format!("${}", index + 1), value)
            });
        Ok(Some(ListingPlans {
            served,
            literal: explain(pg, &format!("EXPLAIN {literal}"))?,
            prepared: prepared.is_some(),
        }))
    }

    /// Writes `rows` in one transaction: all of them or none.
    ///
    /// Rows whose id exists are handled per `on_existing`; with [`OnExisting::Fail`] the
    /// error names the existing ids. New rows go in with `COPY` on PostgreSQL and with
    /// multi-row `INSERT`s on SQLite.
    ///
    /// On PostgreSQL the table is then vacuumed and analysed: the planner needs fresh
    /// statistics to choose between the filter indexes, and an index-only scan needs the
    /// visibility map that only VACUUM sets, so until autovacuum got there, listings right
    /// after a bulk load would pay several times their cost.
    pub fn import(
        &self,
        rows: &[MovieRow],
        on_existing: OnExisting,
    ) -> Result<ImportCounts, ServiceError> {
        let mut conn = self.db.conn()?;
        // Under the write lock, no other writer adds an id between the look-up of the
        // existing ids and the insert.
        let counts = write_locked(&mut conn, |conn| {
            if let DbConnection::Pg(pg) = &mut *conn {
                // A bulk import is an admin job: the request-sized statement timeout would cut
                // a large COPY short. SET LOCAL ends with the transaction. Its many
                // statements send the read caches one "everything changed" message, not one
                // per statement (migration movie_changes).
                pg.batch_execute(
                    "SET LOCAL statement_timeout = 0; \
                     SELECT set_config('myapi.movies_notified', 'ids', true)",
                )?;
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
        })?;
        if let DbConnection::Pg(pg) = &mut *conn
            && counts.inserted + counts.updated > 0
        {
            // One statement per call (several in one run as a transaction block, where VACUUM
            // cannot), without the request-sized timeout. The rows are in either way: a
            // failure here only leaves the table to autovacuum.
            let timeout = self.db.statement_timeout().as_millis();
            let vacuumed = pg
                .batch_execute("SET statement_timeout = 0")
                .and_then(|()| pg.batch_execute("VACUUM (ANALYZE) movies"))
                .and_then(|()| pg.batch_execute(&format!("SET statement_timeout = {timeout}")));
            if let Err(error) = vacuumed {
                log::warn!("import: VACUUM (ANALYZE) movies failed, left to autovacuum: {error}");
            }
        }
        Ok(counts)
    }
}

/// One read of the "new and good" listing: up to `limit` movies released in or after
/// `year`, rated at least `min_rating`, with ids above `after`, by id, skipping `offset`.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub year: i32,
    pub min_rating: BigDecimal,
    /// A cursor: the last id of the previous page, or 0.
    pub after: i32,
    pub limit: i64,
    pub offset: i64,
}

/// `EXPLAIN` output (text format, one line per row) of the listing query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingPlans {
    /// The plan of its next execution as the service sends it.
    pub served: String,
    /// The plan for the same SQL with the values written in as literals: what PostgreSQL
    /// picks knowing them.
    pub literal: String,
    /// Whether the service's query was a prepared statement cached on the connection.
    pub prepared: bool,
}

/// The listing query for a [`Listing`]: one SQL text for every page (the cursor and the
/// offset are always there, as 0 when unused), so there is one statement to plan.
macro_rules! listing_query {
    ($listing:expr) => {
        movies::table
            .filter(movies::released.ge($listing.year))
            .filter(movies::rating.ge(&$listing.min_rating))
            .filter(movies::movie_id.gt($listing.after))
            .order(movies::movie_id)
            .limit($listing.limit)
            .offset($listing.offset)
            .select(MovieRow::as_select())
    };
}
use listing_query;

/// Runs the listing; on PostgreSQL unnamed, so it is planned for its values each time (see
/// [`MovieDataManager::released_since`]).
fn page(conn: &mut DbConnection, listing: &Listing) -> Result<Vec<MovieRow>, ServiceError> {
    Ok(match conn {
        DbConnection::Pg(pg) => Uncached(listing_query!(listing)).load(pg)?,
        DbConnection::Sqlite(sqlite) => listing_query!(listing).load(sqlite)?,
    })
}

/// A query diesel must not keep as a prepared statement: on PostgreSQL it goes out unnamed
/// (parse, bind and execute in one round trip) and is planned with its bound values.
#[derive(Debug, Clone, Copy, QueryId)]
struct Uncached<Q>(Q);

impl<Q: Query> Query for Uncached<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Uncached<Q> {
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        pass.unsafe_to_cache_prepared();
        self.0.walk_ast(pass)
    }
}

impl<Q, C> RunQueryDsl<C> for Uncached<Q> {}

/// `EXPLAIN` of a query, sent with the query's own binds.
#[derive(Debug, Clone, Copy, QueryId)]
struct Explain<Q>(Q);

impl<Q> Query for Explain<Q> {
    type SqlType = Text;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Explain<Q> {
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        pass.unsafe_to_cache_prepared();
        pass.push_sql("EXPLAIN ");
        self.0.walk_ast(pass)
    }
}

impl<Q, C> RunQueryDsl<C> for Explain<Q> {}

#[derive(QueryableByName)]
struct PreparedName {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// The lines `sql` (an `EXPLAIN` with no binds) answers, joined.
fn explain(pg: &mut PgConnection, sql: &str) -> Result<String, ServiceError> {
    Ok(diesel::sql_query(sql)
        .load::<PlanLine>(pg)?
        .into_iter()
        .map(|row| row.line)
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Runs `work` in a transaction that holds the table's write lock from the start: SQLite
/// `BEGIN IMMEDIATE` (one writer at a time, as always there, but taken before the first
/// read, so the reads stay current), PostgreSQL `LOCK TABLE … SHARE ROW EXCLUSIVE` (waits
/// for every transaction that writes movies, blocks new ones until commit; readers are
/// never blocked).
fn write_locked<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, ServiceError>,
) -> Result<T, ServiceError> {
    write_transaction(conn, |conn| {
        lock_movies(conn)?;
        work(conn)
    })
}

/// The PostgreSQL half of [`write_locked`]'s lock (SQLite's is its `BEGIN IMMEDIATE`).
fn lock_movies(conn: &mut DbConnection) -> Result<(), ServiceError> {
    match conn {
        DbConnection::Pg(pg) => {
            Ok(pg.batch_execute("LOCK TABLE movies IN SHARE ROW EXCLUSIVE MODE")?)
        }
        DbConnection::Sqlite(_) => Ok(()),
    }
}

/// Inserts `row` under the next id after the largest (inside [`write_locked`]'s lock).
fn insert_next(conn: &mut DbConnection, row: &MovieRow) -> Result<VersionedMovieRow, ServiceError> {
    let largest: Option<i32> = movies::table.select(max(movies::movie_id)).first(conn)?;
    let movie_id = largest.unwrap_or(0).checked_add(1).ok_or_else(|| {
        ServiceError::Conflict("no movie id is left: the largest one is taken".into())
    })?;
    diesel::insert_into(movies::table)
        .values(MovieRow {
            movie_id,
            ..row.clone()
        })
        .returning(VERSIONED_COLUMNS)
        .get_result(conn)
        .map_err(write_error)
}

/// A write the database refused: a constraint the service's checks should have caught
/// names its field (422), a duplicate id is a conflict (409); anything else as usual.
fn write_error(error: DieselError) -> ServiceError {
    const FIELDS: [&str; 4] = ["movie_id", "title", "released", "rating"];
    let DieselError::DatabaseError(kind, info) = &error else {
        return error.into();
    };
    match kind {
        DatabaseErrorKind::UniqueViolation => {
            ServiceError::Conflict("a movie with this id exists".into())
        }
        DatabaseErrorKind::CheckViolation | DatabaseErrorKind::NotNullViolation => {
            // PostgreSQL names the constraint (`movies_title_check`) or column; SQLite
            // puts either in the message (`CHECK constraint failed: movies_title_check`).
            let source = info
                .constraint_name()
                .or(info.column_name())
                .unwrap_or(info.message());
            let field = FIELDS
                .into_iter()
                .find(|field| source.contains(field))
                .unwrap_or("movie");
            log::warn!(
                "the database refused a movie the service accepted: {}",
                myapi_models::one_line(info.message())
            );
            ServiceError::invalid(field, "is refused by the database's constraints")
        }
        _ => error.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(kind: DatabaseErrorKind, message: &str) -> ServiceError {
        write_error(DieselError::DatabaseError(
            kind,
            Box::new(message.to_owned()),
        ))
    }

    #[test]
    fn refused_writes_name_their_field() {
        let field = |error: ServiceError| match error {
            ServiceError::Invalid(fields) => fields[0].field.clone(),
            other => panic!("{other:?}"),
        };
        // SQLite's messages; PostgreSQL's constraint names are the same.
        let check = DatabaseErrorKind::CheckViolation;
        for (message, expected) in [
            (
                "CHECK constraint failed: movies_title_printable_check",
                "title",
            ),
            ("CHECK constraint failed: movies_released_check", "released"),
            ("CHECK constraint failed: movies_rating_check", "rating"),
            ("CHECK constraint failed: movies_movie_id_check", "movie_id"),
            ("CHECK constraint failed: something_else", "movie"),
        ] {
            assert_eq!(field(refused(check, message)), expected, "{message}");
        }
        let not_null = DatabaseErrorKind::NotNullViolation;
        assert_eq!(
            field(refused(
                not_null,
                "NOT NULL constraint failed: movies.title"
            )),
            "title"
        );
        assert!(matches!(
            refused(
                DatabaseErrorKind::UniqueViolation,
                "UNIQUE constraint failed: movies.movie_id"
            ),
            ServiceError::Conflict(_)
        ));
        assert!(matches!(
            refused(DatabaseErrorKind::Unknown, "disk I/O error"),
            ServiceError::Internal { .. }
        ));
    }
}

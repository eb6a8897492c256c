//! Every query on `idempotency_keys`, and nothing else. [`claim`] and [`record`] run on the
//! caller's connection, inside the transaction of the work the key guards.

use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use myapi_models::DbConnection;
use myapi_models::rows::IdempotencyRow;
use myapi_models::schema::idempotency_keys;

use super::{KeyedRequest, StoredResponse};
use crate::ServiceError;
use crate::audit::unix_now;

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Takes `request`'s key for the current transaction, and returns the answer stored for it
/// if there is one younger than `cutoff` (Unix seconds); an older one is deleted.
///
/// Fails with a conflict (409) while another transaction holds the key (PostgreSQL: a
/// transaction advisory lock on a hash of it, so a repeat never waits), and with the key
/// named as invalid (422) when its stored answer was for another body.
pub(crate) fn claim(
    conn: &mut DbConnection,
    request: &KeyedRequest,
    cutoff: i64,
) -> Result<Option<StoredResponse>, ServiceError> {
    if let DbConnection::Pg(pg) = conn {
        let scope = format!(
            "{}\n{}\n{}",
            request.caller, request.operation, request.key.0
        );
        let taken: Locked = diesel::sql_query(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked",
        )
        .bind::<Text, _>(scope)
        .get_result(pg)?;
        if !taken.locked {
            return Err(ServiceError::Conflict(
                "a request with this Idempotency-Key is still running; retry once it has ended"
                    .into(),
            ));
        }
    }
    let this_key = idempotency_keys::table
        .filter(idempotency_keys::caller.eq(&request.caller))
        .filter(idempotency_keys::operation.eq(request.operation))
        .filter(idempotency_keys::idempotency_key.eq(&request.key.0));
    let Some(stored) = this_key
        .select(IdempotencyRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    if stored.created_at < cutoff {
        diesel::delete(this_key).execute(conn)?;
        return Ok(None);
    }
    if stored.fingerprint != request.fingerprint {
        return Err(ServiceError::invalid(
            "Idempotency-Key",
            "was sent before with another request body; use a new key for a new request",
        ));
    }
    Ok(Some(StoredResponse {
        status: u16::try_from(stored.status)
            .map_err(|e| ServiceError::internal("stored status out of range", e))?,
        location: stored.location,
        etag: stored.etag,
        body: stored.body,
    }))
}

/// Stores `response` as the answer to `request` (after a [`claim`] that found none, in the
/// same transaction).
pub(crate) fn record(
    conn: &mut DbConnection,
    request: &KeyedRequest,
    response: &StoredResponse,
) -> Result<(), ServiceError> {
    let row = IdempotencyRow {
        caller: request.caller.clone(),
        operation: request.operation.to_owned(),
        idempotency_key: request.key.0.clone(),
        fingerprint: request.fingerprint.clone(),
        created_at: unix_now(),
        status: i16::try_from(response.status)
            .map_err(|e| ServiceError::internal("status out of range", e))?,
        location: response.location.clone(),
        etag: response.etag.clone(),
        body: response.body.clone(),
    };
    diesel::insert_into(idempotency_keys::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Deletes the answers stored before `before` (Unix seconds); returns how many.
pub(super) fn purge(conn: &mut DbConnection, before: i64) -> Result<usize, ServiceError> {
    Ok(
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(before)))
            .execute(conn)?,
    )
}

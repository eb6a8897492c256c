//! The request limiter on a real PostgreSQL database (created for each test), driven as the
//! web tier drives it: a lease where [`Admission::NeedsLease`] says so, a refill where a
//! decision asks for one. It leases, rather than asking per request; it answers refusals
//! from memory; and it limits from memory while the store fails. Without PostgreSQL these
//! skip, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use myapi_services::Database;
use myapi_services::config::LimitSettings;
use myapi_services::limits::{Admission, BucketKey, Caller, Class, Decision, RateLimiter};
use support::{Backend, TestDb};

/// A limiter on a migrated PostgreSQL database: reads `per_second` and `burst`.
fn limiter(per_second: u32, burst: u32) -> Option<(TestDb, RateLimiter)> {
    let test_db = TestDb::new(Backend::Postgres)?;
    let database = Database::connect(&test_db.settings().database).unwrap();
    database.migrate().unwrap();
    let mut settings: LimitSettings = myapi_services::Settings::defaults().unwrap().limits;
    settings.read.per_second = per_second.try_into().unwrap();
    settings.read.burst = burst.try_into().unwrap();
    let limiter = RateLimiter::new(&database, &settings).unwrap();
    assert!(limiter.blocks(), "auto is the shared store on PostgreSQL");
    Some((test_db, limiter))
}

const KEY: BucketKey = BucketKey {
    caller: Caller::User(7),
    class: Class::Read,
};

/// One request as the web tier makes it; counts the statements it took (leases and
/// refills).
fn request(limiter: &RateLimiter, statements: &mut u32) -> Decision {
    let decision = match limiter.admit(KEY) {
        Admission::Decided(decision) => decision,
        Admission::NeedsLease(lease) => {
            *statements += 1;
            limiter.lease(lease)
        }
    };
    if decision.refill {
        *statements += 1;
        limiter.refill(KEY);
    }
    decision
}

#[test]
fn requests_are_spent_from_leases_and_refusals_from_memory() {
    let Some((_db, limiter)) = limiter(1, 400) else {
        return;
    };
    let mut statements = 0;
    let admitted = (0..400)
        .map(|_| request(&limiter, &mut statements))
        .filter(|decision| decision.retry_after_secs.is_none())
        .count();
    // The whole burst, give or take what a lease still held when the loop ended.
    assert!(admitted >= 390, "{admitted} of a burst of 400");
    // Leases grow to a quarter of the burst: a handful of statements, not 400.
    println!("400 requests: {statements} statements");
    assert!(statements <= 12, "{statements} statements for 400 requests");

    // Past the burst: one statement learns the bucket is empty, the rest are refused from
    // memory with what is left (nothing) and when to come back.
    let before = statements;
    for _ in 0..200 {
        request(&limiter, &mut statements);
    }
    let refused = request(&limiter, &mut statements);
    assert!(refused.retry_after_secs.is_some_and(|secs| secs <= 1.0));
    assert_eq!(refused.remaining, 0);
    assert!(
        statements - before <= 12,
        "{} statements for 200 refused requests",
        statements - before
    );
}

#[test]
fn a_failing_store_leaves_each_instance_to_limit_from_memory() {
    let Some((db, limiter)) = limiter(1, 10) else {
        return;
    };
    // Take the function away, as a database that is not migrated would.
    let dropped = std::process::Command::new("psql")
        .args([&db.dsn, "-XAtqc", "DROP FUNCTION myapi.rate_limit_lease"])
        .status()
        .unwrap();
    assert!(dropped.success());
    let mut statements = 0;
    let decisions: Vec<Decision> = (0..15)
        .map(|_| request(&limiter, &mut statements))
        .collect();
    // The limit still holds, from this process's memory, and the store is asked once,
    // then left alone for a second.
    let admitted = decisions
        .iter()
        .filter(|decision| decision.retry_after_secs.is_none())
        .count();
    assert_eq!(admitted, 10);
    assert_eq!(statements, 1, "the failed store was asked again at once");
}

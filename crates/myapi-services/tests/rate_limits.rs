//! The request limiter on a real PostgreSQL database (created for each test), driven as the
//! web tier drives it: a lease where [`Admission::NeedsLease`] says so, and the refills
//! that admitting queued, as the refill thread takes them. It leases, rather than asking per request; it answers refusals
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
    if limiter.refill_queued() > 0 {
        *statements += 1;
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
        .args([
            &db.dsn,
            "-XAtqc",
            "DROP FUNCTION myapi.rate_limit_lease_many",
        ])
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

/// Spends `count` requests of `key` as the web tier does; whether each took a lease first.
fn spend(limiter: &RateLimiter, key: BucketKey, count: usize) -> Vec<bool> {
    (0..count)
        .map(|_| match limiter.admit(key) {
            Admission::Decided(decision) => {
                assert!(decision.retry_after_secs.is_none(), "{key:?} refused");
                false
            }
            Admission::NeedsLease(lease) => {
                let decision = limiter.lease(lease);
                assert!(decision.retry_after_secs.is_none(), "{key:?} refused");
                true
            }
        })
        .collect()
}

fn user(id: i32) -> BucketKey {
    BucketKey {
        caller: Caller::User(id),
        class: Class::Read,
    }
}

#[test]
fn the_refills_of_many_callers_are_one_statement() {
    let Some((_db, limiter)) = limiter(1, 400) else {
        return;
    };
    // A first lease of 4 each; the third request finds a quarter left and queues a refill,
    // the fourth spends the last request held.
    for id in 1..=50 {
        assert_eq!(spend(&limiter, user(id), 4), [true, false, false, false]);
    }
    assert_eq!(
        limiter.refill_queued(),
        50,
        "one statement for every refill"
    );
    assert_eq!(limiter.refill_queued(), 0);
    // Each caller now holds its refill: no request waits for a lease.
    for id in 1..=50 {
        assert_eq!(spend(&limiter, user(id), 20), [false; 20], "caller {id}");
    }
}

#[test]
fn the_refill_thread_leases_ahead_of_need() {
    let Some((_db, limiter)) = limiter(1, 400) else {
        return;
    };
    limiter.start_refills().unwrap();
    assert_eq!(spend(&limiter, user(1), 4), [true, false, false, false]);
    // The refill thread gathers for 20 ms, then takes the lease; the requests after it
    // spend from memory.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(limiter.refill_queued(), 0, "the thread took the refill");
    assert_eq!(spend(&limiter, user(1), 20), [false; 20]);
}

/// Instances lease overlapping buckets in whatever order their refills fell due; the
/// function locks them in key order, so concurrent statements queue and never deadlock.
#[test]
fn concurrent_batches_over_the_same_buckets_do_not_deadlock() {
    let Some((db, _limiter)) = limiter(1, 400) else {
        return;
    };
    let keys: Vec<String> = (0..12)
        .map(|k| format!("'\\x7275{k:08x}'::bytea"))
        .collect();
    let batches: Vec<std::thread::JoinHandle<()>> = (0..6)
        .map(|batch| {
            let dsn = db.dsn.clone();
            let mut order = keys.clone();
            order.rotate_left(batch * 5 % 12);
            if batch % 2 == 1 {
                order.reverse();
            }
            std::thread::spawn(move || {
                let n = order.len();
                let sql = format!(
                    "SELECT myapi.rate_limit_lease_many(ARRAY[{}], array_fill(0.01::float8, \
                     ARRAY[{n}]), array_fill(400::float8, ARRAY[{n}]), array_fill(1, ARRAY[{n}])) \
                     FROM generate_series(1, 40)",
                    order.join(","),
                );
                for _ in 0..5 {
                    let out = std::process::Command::new("psql")
                        .args([&dsn, "-XAtqc", &sql])
                        .output()
                        .unwrap();
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
                }
            })
        })
        .collect();
    for batch in batches {
        batch.join().unwrap();
    }
}

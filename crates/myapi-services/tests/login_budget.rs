//! One set of tests for both login budget stores: the in-process one, and the PostgreSQL
//! one on a database created for each test (several pools on it stand in for several
//! instances). Each test runs as `NAME::memory` and `NAME::postgres`; without PostgreSQL the
//! latter skips, except under `CI=true`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use myapi_services::auth::{BudgetError, BudgetKeys, LoginBudget, MemoryBudget, PostgresBudget};
use myapi_services::config::{AuthSettings, StateStore};
use myapi_services::{Database, ServiceError};
use support::{Backend, TestDb};

#[derive(Debug, Clone, Copy)]
enum Store {
    Memory,
    Postgres,
}

/// A store under test, with what it needs to live.
struct Fixture {
    budget: Arc<dyn LoginBudget>,
    keys: BudgetKeys,
    auth: AuthSettings,
    /// For the PostgreSQL store: the database, to open more pools ("instances") on it.
    db: Option<(TestDb, Database)>,
}

impl Fixture {
    /// `None` when PostgreSQL is unreachable outside CI.
    fn new(store: Store, tweak: impl FnOnce(&mut AuthSettings)) -> Option<Self> {
        let mut auth = myapi_services::Settings::defaults().unwrap().auth;
        auth.ip_failure_burst = 5.try_into().unwrap();
        auth.ip_failure_refill_secs = 60;
        auth.account_failure_burst = 3.try_into().unwrap();
        auth.account_failure_refill_secs = 60;
        tweak(&mut auth);
        let keys = BudgetKeys::new(&auth);
        match store {
            Store::Memory => Some(Self {
                budget: Arc::new(MemoryBudget::new(&auth)),
                keys,
                auth,
                db: None,
            }),
            Store::Postgres => {
                let test_db = TestDb::new(Backend::Postgres)?;
                let database = Database::connect(&test_db.settings().database).unwrap();
                database.migrate().unwrap();
                Some(Self {
                    budget: Arc::new(PostgresBudget::new(database.clone(), &auth)),
                    keys,
                    auth,
                    db: Some((test_db, database)),
                })
            }
        }
    }

    /// Another handle on the same budget: for PostgreSQL a store on a pool of its own, as
    /// another instance would have; in process, the same store.
    fn instance(&self) -> Arc<dyn LoginBudget> {
        match &self.db {
            Some((test_db, _)) => {
                let mut settings = test_db.settings().database;
                settings.pool_size = 2.try_into().unwrap();
                let database = Database::connect(&settings).unwrap();
                Arc::new(PostgresBudget::new(database, &self.auth))
            }
            None => Arc::clone(&self.budget),
        }
    }

    /// Reserves and keeps the reservation (a wrong password); `Err(retry after)` when refused.
    fn fail(&self, account: &str, client: IpAddr, stamp: Option<&str>) -> Result<(), u64> {
        reserve(&*self.budget, &self.keys, account, client, stamp)
    }

    fn succeed(&self, account: &str, client: IpAddr, stamp: &str) {
        let attempt = self.keys.attempt(account, client);
        let reservation = self.budget.reserve(&attempt, Some(stamp)).unwrap();
        self.budget.release(&reservation, Some(stamp)).unwrap();
    }

    fn client_admitted(&self, client: IpAddr) -> bool {
        match self.budget.check_client(&self.keys.network(client)) {
            Ok(()) => true,
            Err(BudgetError::Exhausted { .. }) => false,
            Err(error) => panic!("{error}"),
        }
    }
}

fn reserve(
    budget: &dyn LoginBudget,
    keys: &BudgetKeys,
    account: &str,
    client: IpAddr,
    stamp: Option<&str>,
) -> Result<(), u64> {
    match budget.reserve(&keys.attempt(account, client), stamp) {
        Ok(_) => Ok(()),
        Err(BudgetError::Exhausted { retry_after_secs }) => Err(retry_after_secs),
        Err(error) => panic!("store failed: {error}"),
    }
}

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 66));
const OWNER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

/// `ip(n)`: a distinct IPv4 client per `n`.
fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a10_0000 + n))
}

/// Defines `NAME::memory` and `NAME::postgres`, each running `NAME(store)`.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn memory() {
                super::$name(super::Store::Memory);
            }
            #[test]
            fn postgres() {
                super::$name(super::Store::Postgres);
            }
        }
    )*};
}

both_stores!(
    an_account_is_throttled_after_its_burst_with_retry_after,
    reservations_in_flight_count_and_cancelling_refunds,
    a_client_network_is_throttled_across_accounts,
    one_ipv6_slash_64_is_one_client_and_mapped_ipv4_is_ipv4,
    a_trusted_network_passes_until_the_password_changes,
    a_trusted_network_cannot_lock_the_account_for_others,
    a_success_refunds_one_attempt_and_no_more,
    a_bad_token_counts_against_the_client_alone,
    failures_leak_away_over_time,
    concurrent_reservations_admit_exactly_the_account_budget,
    concurrent_reservations_admit_exactly_the_client_budget,
    all_steps_race_without_failing,
);

fn an_account_is_throttled_after_its_burst_with_retry_after(store: Store) {
    let Some(f) = Fixture::new(store, |_| {}) else {
        return;
    };
    for i in 0..3 {
        f.fail("a@x.io", ip(i), Some("stamp")).unwrap();
    }
    let wait = f.fail("a@x.io", ip(9), Some("stamp")).unwrap_err();
    assert!((1..=60).contains(&wait), "retry after {wait}");
    f.fail("b@x.io", OWNER, None).unwrap();
}

fn reservations_in_flight_count_and_cancelling_refunds(store: Store) {
    let Some(f) = Fixture::new(store, |_| {}) else {
        return;
    };
    let pending: Vec<_> = (0..3)
        .map(|_| {
            let attempt = f.keys.attempt("a@x.io", ATTACKER);
            f.budget.reserve(&attempt, None).unwrap()
        })
        .collect();
    assert!(f.fail("a@x.io", OWNER, None).is_err(), "in flight counts");
    for reservation in &pending {
        f.budget.release(reservation, None).unwrap();
    }
    f.fail("a@x.io", OWNER, None).unwrap();
    // The cancelled three gave the client's budget back too: all 5 are left.
    for i in 0..5 {
        f.fail(&format!("u{i}@x.io"), ATTACKER, None).unwrap();
    }
    assert!(!f.client_admitted(ATTACKER));
}

fn a_client_network_is_throttled_across_accounts(store: Store) {
    let Some(f) = Fixture::new(store, |_| {}) else {
        return;
    };
    for i in 0..5 {
        assert!(f.client_admitted(ATTACKER));
        f.fail(&format!("u{i}@x.io"), ATTACKER, None).unwrap();
    }
    assert!(!f.client_admitted(ATTACKER));
    let wait = f.fail("fresh@x.io", ATTACKER, None).unwrap_err();
    assert!((1..=60).contains(&wait), "retry after {wait}");
    assert!(f.client_admitted(OWNER));
    f.fail("fresh@x.io", OWNER, None).unwrap();
}

fn one_ipv6_slash_64_is_one_client_and_mapped_ipv4_is_ipv4(store: Store) {
    let Some(f) = Fixture::new(store, |_| {}) else {
        return;
    };
    for i in 0..5u16 {
        let address = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, i, i, i, i);
        f.fail(&format!("u{i}@x.io"), address.into(), None).unwrap();
    }
    let neighbour = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 9, 9, 9, 9);
    assert!(!f.client_admitted(neighbour.into()));
    let elsewhere = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
    assert!(f.client_admitted(elsewhere.into()));

    for i in 0..5 {
        f.fail(&format!("v{i}@x.io"), ATTACKER, None).unwrap();
    }
    let mapped = Ipv4Addr::new(10, 0, 0, 66).to_ipv6_mapped();
    assert!(!f.client_admitted(mapped.into()), "mapped counts as IPv4");
    assert_eq!(f.keys.network(mapped.into()), f.keys.network(ATTACKER));
}

fn a_trusted_network_passes_until_the_password_changes(store: Store) {
    let Some(f) = Fixture::new(store, |auth| {
        auth.ip_failure_burst = 50.try_into().unwrap();
    }) else {
        return;
    };
    f.succeed("a@x.io", OWNER, "stamp-1");
    for _ in 0..10 {
        let _ = f.fail("a@x.io", ATTACKER, Some("stamp-1"));
    }
    assert!(f.fail("a@x.io", ATTACKER, Some("stamp-1")).is_err());
    let attempt = f.keys.attempt("a@x.io", OWNER);
    let reservation = f.budget.reserve(&attempt, Some("stamp-1")).unwrap();
    assert!(
        !reservation.account_charged,
        "a trusted network is charged alone"
    );
    f.budget.release(&reservation, None).unwrap();
    assert!(
        f.fail("a@x.io", OWNER, Some("stamp-2")).is_err(),
        "a new stamp (password change) forgets the trusted networks"
    );
    assert!(
        f.fail("a@x.io", OWNER, None).is_err(),
        "no stamp (unknown user) is never trusted"
    );
}

/// An old app at home retrying a stale password, from a network that logged in before:
/// its failures are its own (its client bucket still bounds them), and the account stays
/// open to a login from elsewhere.
fn a_trusted_network_cannot_lock_the_account_for_others(store: Store) {
    let Some(f) = Fixture::new(store, |auth| {
        auth.ip_failure_burst = 50.try_into().unwrap();
    }) else {
        return;
    };
    f.succeed("a@x.io", OWNER, "stamp-1");
    for _ in 0..30 {
        f.fail("a@x.io", OWNER, Some("stamp-1")).unwrap();
    }
    let elsewhere: IpAddr = Ipv4Addr::new(10, 7, 7, 7).into();
    f.fail("a@x.io", elsewhere, Some("stamp-1"))
        .expect("the account's budget is untouched by the trusted network's failures");
    for _ in 0..20 {
        let _ = f.fail("a@x.io", OWNER, Some("stamp-1"));
    }
    assert!(
        f.fail("a@x.io", OWNER, Some("stamp-1")).is_err(),
        "the trusted network's own bucket still bounds it"
    );
}

fn a_success_refunds_one_attempt_and_no_more(store: Store) {
    let Some(f) = Fixture::new(store, |_| {}) else {
        return;
    };
    // The account: two failures, then the owner's success gives one back.
    f.fail("a@x.io", ATTACKER, None).unwrap();
    f.fail("a@x.io", ATTACKER, None).unwrap();
    f.succeed("a@x.io", OWNER, "s");
    f.fail("a@x.io", OWNER, None).unwrap();
    assert!(f.fail("a@x.io", OWNER, None).is_err(), "3 failures: full");

    // The client: logging in to one's own account buys no fresh guesses against others.
    let other: IpAddr = Ipv4Addr::new(10, 9, 9, 9).into();
    for i in 0..4 {
        f.fail(&format!("victim{i}@x.io"), other, None).unwrap();
    }
    f.succeed("attacker@x.io", other, "s");
    f.fail("victim9@x.io", other, None).unwrap();
    assert!(f.fail("victim10@x.io", other, None).is_err());
}

fn a_bad_token_counts_against_the_client_alone(store: Store) {
    let Some(f) = Fixture::new(store, |_| {}) else {
        return;
    };
    let client = f.keys.network(ATTACKER);
    for _ in 0..5 {
        assert!(f.client_admitted(ATTACKER));
        f.budget.count_client_failure(&client).unwrap();
    }
    assert!(!f.client_admitted(ATTACKER));
    f.fail("a@x.io", OWNER, None).unwrap();
}

fn failures_leak_away_over_time(store: Store) {
    let Some(f) = Fixture::new(store, |auth| {
        auth.account_failure_burst = 2.try_into().unwrap();
        auth.account_failure_refill_secs = 1;
    }) else {
        return;
    };
    f.fail("a@x.io", ip(1), None).unwrap();
    f.fail("a@x.io", ip(2), None).unwrap();
    assert_eq!(f.fail("a@x.io", ip(3), None), Err(1), "retry after 1 s");
    std::thread::sleep(Duration::from_millis(1100));
    f.fail("a@x.io", ip(4), None).unwrap();
    assert!(
        f.fail("a@x.io", ip(5), None).is_err(),
        "one leaked, not two"
    );
    std::thread::sleep(Duration::from_millis(2100));
    f.fail("a@x.io", ip(6), None).unwrap();
    f.fail("a@x.io", ip(7), None).unwrap();
}

/// `attempts` reservations for `account(i)` from `client(i)`, started at once on 8 threads,
/// each with its own store handle (for PostgreSQL: its own pool, as another instance).
/// Returns how many were admitted.
fn race(
    f: &Fixture,
    attempts: u32,
    account: impl Fn(u32) -> String + Send + Sync + 'static,
    client: impl Fn(u32) -> IpAddr + Send + Sync + 'static,
) -> u32 {
    const THREADS: u32 = 8;
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let (account, client) = (Arc::new(account), Arc::new(client));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (budget, keys) = (f.instance(), f.keys);
            let (barrier, account, client) = (
                Arc::clone(&barrier),
                Arc::clone(&account),
                Arc::clone(&client),
            );
            std::thread::spawn(move || {
                barrier.wait();
                (thread..attempts)
                    .step_by(THREADS as usize)
                    .filter(|i| reserve(&*budget, &keys, &account(*i), client(*i), None).is_ok())
                    .count() as u32
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

fn concurrent_reservations_admit_exactly_the_account_budget(store: Store) {
    let Some(f) = Fixture::new(store, |auth| {
        auth.account_failure_burst = 10.try_into().unwrap();
    }) else {
        return;
    };
    let admitted = race(&f, 100, |_| "victim@x.io".into(), ip);
    println!("{store:?}: 100 concurrent reservations for one account: {admitted} admitted");
    assert_eq!(admitted, 10);
}

fn concurrent_reservations_admit_exactly_the_client_budget(store: Store) {
    let Some(f) = Fixture::new(store, |auth| {
        auth.ip_failure_burst = 20.try_into().unwrap();
    }) else {
        return;
    };
    let admitted = race(&f, 100, |i| format!("u{i}@x.io"), |_| ATTACKER);
    println!("{store:?}: 100 concurrent reservations from one client: {admitted} admitted");
    assert_eq!(admitted, 20);
}

/// A budget the database cannot answer refuses the attempt as unavailable (503), never
/// lets it through uncounted.
#[test]
fn a_failing_shared_store_is_unavailable_and_admits_nothing() {
    let Some(f) = Fixture::new(Store::Postgres, |_| {}) else {
        return;
    };
    let (test_db, _) = f.db.as_ref().unwrap();
    // Take the function away, as a database that is not migrated would.
    psql(&test_db.dsn, "DROP FUNCTION myapi.login_budget_reserve_v2");
    let attempt = f.keys.attempt("a@x.io", OWNER);
    match f.budget.reserve(&attempt, None) {
        Err(BudgetError::Store(ServiceError::Unavailable(_))) => {}
        other => panic!("expected the store to be unavailable, got {other:?}"),
    }
}

/// What one login costs the shared store: a reservation and its release (a success) on one
/// connection, and a client check. Printed, and bounded loosely so a regression to many
/// round trips shows.
#[test]
fn the_cost_of_a_login_on_the_shared_store() {
    let Some(f) = Fixture::new(Store::Postgres, |auth| {
        auth.ip_failure_burst = 1_000_000.try_into().unwrap();
    }) else {
        return;
    };
    let budget = f.instance();
    const LOGINS: u32 = 2000;
    let started = Instant::now();
    for i in 0..LOGINS {
        let attempt = f.keys.attempt(&format!("user{}@x.io", i % 50), OWNER);
        let reservation = budget.reserve(&attempt, Some("stamp")).unwrap();
        budget.release(&reservation, Some("stamp")).unwrap();
    }
    let pair = started.elapsed() / LOGINS;
    let started = Instant::now();
    for _ in 0..LOGINS {
        budget.check_client(&f.keys.network(ATTACKER)).unwrap();
    }
    let check = started.elapsed() / LOGINS;
    // A round trip that does nothing, for scale.
    println!(
        "shared login budget on one connection: reserve + release {pair:?} per login, \
         check_client {check:?}; an empty round trip {:?}",
        round_trip(&f.db.as_ref().unwrap().0.dsn)
    );
    assert!(pair < Duration::from_millis(20), "{pair:?}");
}

/// "database" names the shared store, which only PostgreSQL has: on SQLite start-up stops
/// and names the key.
#[test]
fn the_database_store_needs_postgresql() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let mut settings = db.settings();
    settings.auth.login_budget = StateStore::Database;
    match myapi_services::Services::build(&settings, true) {
        Err(error) => assert!(error.to_string().contains("auth.login_budget"), "{error}"),
        Ok(_) => panic!("a database login budget on SQLite was accepted"),
    }
}

/// The time of one `SELECT 1` on its own connection: a round trip to the database.
fn round_trip(dsn: &str) -> Duration {
    use myapi_models::diesel::prelude::*;
    use myapi_models::diesel::{PgConnection, dsl::sql, sql_types::Integer};
    let mut conn = PgConnection::establish(dsn).unwrap();
    const TRIPS: u32 = 2000;
    let started = Instant::now();
    for _ in 0..TRIPS {
        myapi_models::diesel::select(sql::<Integer>("1"))
            .get_result::<i32>(&mut conn)
            .unwrap();
    }
    started.elapsed() / TRIPS
}

/// Every step at once, from 8 handles (for PostgreSQL: 8 pools, as 8 instances) on a few
/// shared accounts and networks, with buckets leaking empty and pruned meanwhile: no step
/// fails (three deadlocks in a row would: the database retries a step's first two).
fn all_steps_race_without_failing(store: Store) {
    let Some(f) = Fixture::new(store, |auth| {
        auth.account_failure_refill_secs = 1;
        auth.ip_failure_refill_secs = 1;
    }) else {
        return;
    };
    let threads: Vec<_> = (0..8u32)
        .map(|thread| {
            let (budget, keys) = (f.instance(), f.keys);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(3);
                let mut steps = 0u32;
                while Instant::now() < deadline {
                    let n = steps.wrapping_mul(7).wrapping_add(thread);
                    let attempt = keys.attempt(&format!("u{}@x.io", n % 3), ip(n % 4));
                    match budget.reserve(&attempt, Some("stamp")) {
                        Ok(reservation) if n % 2 == 0 => {
                            budget.release(&reservation, Some("stamp")).unwrap()
                        }
                        Ok(reservation) => budget.release(&reservation, None).unwrap(),
                        Err(BudgetError::Exhausted { .. }) => {
                            budget.count_client_failure(&attempt.client).unwrap();
                        }
                        Err(error) => panic!("{error}"),
                    }
                    let _ = budget.check_client(&attempt.client);
                    steps += 1;
                }
                steps
            })
        })
        .collect();
    let steps: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    println!("{store:?}: {steps} rounds of every step in 3 s on 8 threads, none failed");
}

/// Buckets that leaked empty are pruned by later reservations, a few at a time. The leak
/// is simulated by moving every bucket's `empty_at` into the past (as a minute's wait
/// would), so how fast this machine runs the first loop cannot prune early.
#[test]
fn leaked_buckets_are_pruned() {
    let Some(f) = Fixture::new(Store::Postgres, |auth| {
        auth.ip_failure_burst = 1000.try_into().unwrap();
    }) else {
        return;
    };
    let dsn = f.db.as_ref().unwrap().0.dsn.clone();
    for i in 0..300 {
        f.fail(&format!("stale{i}@x.io"), ip(i), None).unwrap();
    }
    assert_eq!(rows(&dsn), 600);
    psql(
        &dsn,
        "UPDATE myapi.login_budgets SET empty_at = now() - interval '1 second'",
    );
    for i in 0..100 {
        f.fail("live@x.io", ip(1000 + i % 2), None).unwrap_or(());
    }
    let left = rows(&dsn);
    println!("600 leaked buckets, 100 reservations later: {left} rows");
    assert!(left < 100, "{left} rows left");
}

/// A step that PostgreSQL picks as a deadlock's victim is retried in the database and
/// succeeds. The cycle is made on purpose: another transaction holds the client's bucket,
/// a release takes the account's and waits for the client's, then the other transaction
/// asks for the account's. The release waited first, so its one deadlock check (after the
/// database's `deadlock_timeout`: 2 s here, under the pool's 5 s statement timeout, so a
/// slow machine still asks in time) finds the cycle and fails its attempt; the other
/// transaction then gets the account, commits, and the retry goes through.
#[test]
fn a_deadlocked_step_is_retried() {
    use myapi_models::diesel::prelude::*;
    use myapi_models::diesel::{PgConnection, dsl::sql, sql_query, sql_types::BigInt};
    let Some(f) = Fixture::new(Store::Postgres, |_| {}) else {
        return;
    };
    let dsn = f.db.as_ref().unwrap().0.dsn.clone();
    psql(
        &dsn,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET deadlock_timeout = ''2s''', \
         current_database()); END $$",
    );
    // A pool of its own, opened after the setting: its sessions have it.
    let budget = f.instance();
    f.fail("a@x.io", OWNER, None).unwrap();
    let reservation = budget
        .reserve(&f.keys.attempt("a@x.io", OWNER), None)
        .unwrap();

    let mut other = PgConnection::establish(&dsn).unwrap();
    // The release must be the one to run the deadlock check.
    sql_query("SET deadlock_timeout = '60s'")
        .execute(&mut other)
        .unwrap();
    sql_query("BEGIN").execute(&mut other).unwrap();
    // Keys: 'a' (0x61) || account digest, 'c' (0x63) || client.
    let lock = |conn: &mut PgConnection, which: &str| {
        sql_query(format!(
            "SELECT 1 FROM myapi.login_budgets WHERE key {which} '\\x63' FOR UPDATE"
        ))
        .execute(conn)
    };
    lock(&mut other, ">=").unwrap();
    let release = std::thread::spawn(move || budget.release(&reservation, Some("stamp")));
    let mut watcher = PgConnection::establish(&dsn).unwrap();
    let waiting = sql::<BigInt>(
        "(SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock')",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while myapi_models::diesel::select(waiting.clone()).get_result::<i64>(&mut watcher) != Ok(1) {
        assert!(Instant::now() < deadline, "the release never waited");
        std::thread::sleep(Duration::from_millis(5));
    }
    let asked = Instant::now();
    lock(&mut other, "<").unwrap();
    // Granted only once the release's attempt gave the account back: there was a cycle.
    assert!(
        asked.elapsed() > Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    sql_query("COMMIT").execute(&mut other).unwrap();
    release.join().unwrap().unwrap();
}

/// Runs `sql` with psql on `dsn` and returns what it printed, trimmed.
fn psql(dsn: &str, sql: &str) -> String {
    let output = std::process::Command::new("psql")
        .args([dsn, "-XAtqc", sql])
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "{sql}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn rows(dsn: &str) -> i64 {
    use myapi_models::diesel::prelude::*;
    use myapi_models::diesel::{PgConnection, dsl::sql, sql_types::BigInt};
    let mut conn = PgConnection::establish(dsn).unwrap();
    myapi_models::diesel::select(sql::<BigInt>("(SELECT count(*) FROM myapi.login_budgets)"))
        .get_result(&mut conn)
        .unwrap()
}

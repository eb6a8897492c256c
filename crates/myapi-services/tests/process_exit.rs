//! A process that exits while other threads are inside libpq over TLS (a read cache's
//! listener, a pool's sessions) exits cleanly. OpenSSL, initialised by libpq itself, frees
//! its locks in an exit handler, and such a thread then crashes the exit with SIGSEGV (the
//! `http` test binary did, once, after all its tests had passed); `connect_pg` in
//! `myapi-models` initialises it first, without that handler.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use myapi_models::connection::{ConnectionOptions, DatabaseUrl, establish};
use myapi_models::diesel::connection::SimpleConnection;

#[path = "../../../tests/support/mod.rs"]
mod support;

/// Set in the child processes, to the URL they connect to.
const CHILD: &str = "MYAPI_TEST_EXIT_CHILD";
const NAME: &str = "exiting_while_threads_talk_tls_to_postgresql_is_clean";

#[test]
fn exiting_while_threads_talk_tls_to_postgresql_is_clean() {
    if let Ok(url) = std::env::var(CHILD) {
        exit_under_busy_sessions(&url);
    }
    let admin = support::admin_url();
    let separator = if admin.contains('?') { '&' } else { '?' };
    let url = format!("{admin}{separator}sslmode=require");
    if let Err(error) = establish(&DatabaseUrl::parse(&url).unwrap(), &Default::default()) {
        assert!(!support::in_ci(), "no TLS session with PostgreSQL: {error}");
        eprintln!("skipped: no TLS session with PostgreSQL: {error}");
        return;
    }
    for round in 0..10 {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--test-threads", "1", "--quiet"])
            .env(CHILD, &url)
            .output()
            .unwrap();
        assert!(
            child.status.success(),
            "round {round}: the child ended with {}: {}",
            child.status,
            String::from_utf8_lossy(&child.stderr)
        );
    }
}

/// Four threads connect over TLS and run `SELECT 1`, again and again (as a listener does
/// when its session is lost), while the main thread exits the process.
fn exit_under_busy_sessions(url: &str) -> ! {
    let url = DatabaseUrl::parse(url).unwrap();
    for _ in 0..4 {
        let url = url.clone();
        std::thread::spawn(move || {
            loop {
                if let Ok(mut conn) = establish(&url, &ConnectionOptions::default()) {
                    let _ = conn.batch_execute("SELECT 1");
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    std::process::exit(0)
}

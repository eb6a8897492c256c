//! The movies' read cache: exact across instances and writers (the API, the CLI, plain
//! SQL), through a forced race and the loss of its listener; conditional GET on listings.

use std::process::Command;
use std::time::{Duration, Instant};

use myapi_services::ServiceError;
use myapi_services::auth::Role;
use myapi_services::hooks::Point;
use myapi_services::movies::{IfMatch, MovieId};
use myapi_services::{Services, Settings};
use serde_json::{Value, json};

use crate::support::{Backend, TestCluster, TestDb, in_ci, psql};
use crate::{MAX_STALENESS, TestApp, json_body, spawn_app, spawn_app_with};

const PASSWORD: &str = "correct-horse-battery";
const SOME_MOVIES: &str = "/movies/new?year=1900&rating=0&limit=5";

/// Polls `ready` every 10 ms for up to 10 s.
async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads from `address` until its cache serves: a cache that has not been read from for a
/// second slows its heartbeats down, and the first read after that bypasses it.
async fn trusted(client: &reqwest::Client, address: &str, token: &str, served: &Services) {
    let started = Instant::now();
    while !served.movies.cache().stats().trusted {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the cache never became trusted"
        );
        title(client, address, token, 9).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The backend pids of the cache listeners on the database of `dsn`.
fn listener_pids(dsn: &str) -> Vec<i32> {
    let pids = psql(
        dsn,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'myapi cache listener' \
         AND datname = current_database() ORDER BY pid",
    );
    pids.lines().map(|pid| pid.parse().unwrap()).collect()
}

async fn title(client: &reqwest::Client, address: &str, token: &str, movie_id: i32) -> String {
    let response = client
        .get(format!("{address}/movies/{movie_id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    json_body(response, 200, "application/json").await["title"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn reader(app: &TestApp) -> String {
    app.login_new_user("reader@example.com").await
}

/// Renames movie `movie_id` through a services instance other than the server's (as the
/// CLI would), whatever its version.
fn rename(services: &Services, movie_id: i32, title: &str) {
    services
        .movies
        .update(MovieId(movie_id.into()), Some(&IfMatch::Any), |movie| {
            Ok::<_, ServiceError>(json!({
                "title": title, "released": movie.released, "rating": movie.rating,
            }))
        })
        .unwrap();
}

/// The race the ticket prevents: a read fetches, a write commits and this instance hears
/// of it, then the read stores what it fetched. The read's own answer is old (it began
/// first); the next read must not be.
#[tokio::test]
async fn a_read_that_raced_a_write_does_not_keep_the_old_value() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let app = spawn_app(db).await;
    app.import_sample().await;
    let token = reader(&app).await;
    trusted(&app.client, &app.address, &token, &app.served).await;
    for (round, path) in ["/movies/1", SOME_MOVIES].into_iter().enumerate() {
        let title = format!("Renamed mid-read {round}");
        let (writer, cache) = (app.services.clone(), app.served.movies.cache().clone());
        let renamed = title.clone();
        app.served.hooks.set(Point::MovieFetched, move || {
            let before = cache.stats().invalidations;
            rename(&writer, 1, &renamed);
            let started = Instant::now();
            while cache.stats().invalidations == before {
                assert!(started.elapsed() < Duration::from_secs(10), "never heard");
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let raced = app.get_authed(path, &token).await;
        app.served.hooks.clear(Point::MovieFetched);
        let raced = json_body(raced, 200, "application/json").await;
        assert!(!raced.to_string().contains(&title), "{raced}");

        // Until a read is answered with the cache trusted (one that bypassed it would pass
        // without proving anything): the stale page must not be there.
        let cache = app.served.movies.cache();
        loop {
            let bypasses = cache.stats().bypasses;
            let after = app.get_authed(path, &token).await;
            let after = json_body(after, 200, "application/json").await;
            assert!(after.to_string().contains(&title), "{path}: {after}");
            if cache.stats().bypasses == bypasses {
                break;
            }
        }
    }
}

/// Listener loss, both ways it happens: the backend terminated (the connection ends), and
/// the backend frozen (SIGSTOP: the connection looks alive and nothing comes back). Either
/// way a write made meanwhile is never served old once the bound has passed, and the cache
/// serves again once a new session listens.
#[tokio::test]
async fn a_terminated_listener_turns_the_cache_off_until_a_new_one_listens() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let app = spawn_app(db).await;
    loses_its_listener(&app, |dsn, pid| {
        psql(dsn, &format!("SELECT pg_terminate_backend({pid})"));
        None::<()>
    })
    .await;
}

#[tokio::test]
async fn a_frozen_listener_turns_the_cache_off_until_a_new_one_listens() {
    let test = "a_frozen_listener_turns_the_cache_off_until_a_new_one_listens";
    let Some(cluster) = TestCluster::new(test, &[]) else {
        return;
    };
    cluster.start().unwrap();
    let app = spawn_app(TestDb::at(cluster.dsn())).await;
    loses_its_listener(&app, |_, pid| {
        signal(pid, "STOP");
        Some(Continue(pid))
    })
    .await;
}

/// Sends SIGCONT to a frozen backend when dropped, even by a failed assertion (a stopped
/// backend would hold up the cluster's shutdown).
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

fn signal(pid: i32, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// `lose(dsn, pid)` takes the listener away; what it returns is dropped at the end.
async fn loses_its_listener<T>(app: &TestApp, lose: impl FnOnce(&str, i32) -> Option<T>) {
    app.import_sample().await;
    let token = reader(app).await;
    let dsn = &app.db.dsn;
    trusted(&app.client, &app.address, &token, &app.served).await;
    let hits = || app.served.movies.cache().stats().hits;
    title(&app.client, &app.address, &token, 2).await;
    // A read is a hit while the last heartbeat is within the bound; on a loaded machine one
    // can come back late and a read bypass the cache. What matters here is that reads hit
    // before the listener goes: read until one does.
    let started = Instant::now();
    loop {
        let before = hits();
        assert_eq!(
            title(&app.client, &app.address, &token, 2).await,
            "The Godfather"
        );
        if hits() > before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no read was a hit"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let [old] = listener_pids(dsn)[..] else {
        panic!("one listener expected: {:?}", listener_pids(dsn));
    };
    let _frozen = lose(dsn, old);
    psql(
        dsn,
        "UPDATE myapi.movies SET title = 'Changed unheard' WHERE movie_id = 2",
    );
    tokio::time::sleep(MAX_STALENESS).await;
    assert_eq!(
        title(&app.client, &app.address, &token, 2).await,
        "Changed unheard"
    );

    wait_until("no new listener", || {
        listener_pids(dsn).iter().any(|pid| *pid != old)
    })
    .await;
    trusted(&app.client, &app.address, &token, &app.served).await;
    title(&app.client, &app.address, &token, 2).await;
    let before = hits();
    assert_eq!(
        title(&app.client, &app.address, &token, 2).await,
        "Changed unheard"
    );
    assert_eq!(hits(), before + 1, "the cache does not serve again");
    psql(
        dsn,
        "UPDATE myapi.movies SET title = 'Changed and heard' WHERE movie_id = 2",
    );
    tokio::time::sleep(MAX_STALENESS).await;
    assert_eq!(
        title(&app.client, &app.address, &token, 2).await,
        "Changed and heard"
    );
}

/// On SQLite another process's commit (here `myapi-cli import-movies`) is seen by the very
/// next read: each look-up first reads `PRAGMA data_version`.
#[tokio::test]
async fn an_import_by_the_cli_is_seen_at_once_on_sqlite() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let app = spawn_app(db).await;
    app.import_sample().await;
    let token = reader(&app).await;
    title(&app.client, &app.address, &token, 3).await;
    let before = app.served.movies.cache().stats().hits;
    assert_eq!(
        title(&app.client, &app.address, &token, 3).await,
        "The Dark Knight"
    );
    assert_eq!(app.served.movies.cache().stats().hits, before + 1);
    let listing = app.get_authed(SOME_MOVIES, &token).await;
    assert_eq!(listing.status(), 200);

    let Some(cli) = cli_binary() else {
        return;
    };
    let csv = app.db.dir.path().join("renamed.csv");
    std::fs::write(
        &csv,
        "movie_id,title,released,rating\n3,The Dark Knight (imported),2008,9.0\n",
    )
    .unwrap();
    let imported = Command::new(cli)
        .args(["import-movies", "--on-existing", "update"])
        .arg(&csv)
        .env("MYAPI_DATABASE__DSN", &app.db.dsn)
        .output()
        .unwrap();
    assert!(imported.status.success(), "{imported:?}");

    assert_eq!(
        title(&app.client, &app.address, &token, 3).await,
        "The Dark Knight (imported)"
    );
    let listing = app.get_authed(SOME_MOVIES, &token).await;
    let listing = json_body(listing, 200, "application/json").await;
    assert!(listing.to_string().contains("(imported)"), "{listing}");
}

/// `myapi-cli`, built beside this test by `cargo test --workspace`; `None` (after a notice)
/// when only this package was built, except under CI.
fn cli_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let cli = exe.parent()?.parent()?.join("myapi-cli");
    if cli.exists() {
        return Some(cli);
    }
    assert!(
        !in_ci(),
        "CI=true needs {} (cargo test --workspace)",
        cli.display()
    );
    eprintln!("SKIPPED the CLI part: {} is not built", cli.display());
    None
}

/// Two instances on one database, "write on one, read on the other": after the bound, no
/// read is stale, whoever wrote (the API of the other instance, another services instance
/// as the CLI is, plain SQL). `MYAPI_STALE_ROUNDS` rounds (1,000 by default; the benchmark
/// runs 10,000), in 20 lanes of their own movie each.
#[tokio::test]
async fn no_instance_serves_a_stale_movie_after_the_bound() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let app = spawn_app(db).await;
    app.import_sample().await;
    app.create_user_with_role("editor@example.com", PASSWORD, Role::Editor)
        .await;
    let response = app
        .post_token(&[("username", "editor@example.com"), ("password", PASSWORD)])
        .await;
    let token = json_body(response, 200, "application/json").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (other, other_served) = app.start_served_instance(|_| {}).await;
    trusted(&app.client, &other, &token, &other_served).await;
    let rounds: usize = std::env::var("MYAPI_STALE_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(1_000);
    const LANES: usize = 20;
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..LANES {
        let (client, token, other) = (app.client.clone(), token.clone(), other.clone());
        let (writer, services, dsn) = (
            app.address.clone(),
            app.services.clone(),
            app.db.dsn.clone(),
        );
        lanes.spawn(async move {
            let movie_id = i32::try_from(lane).unwrap() + 1;
            let mut stale = Vec::new();
            for round in (lane..rounds).step_by(LANES) {
                title(&client, &other, &token, movie_id).await; // cached there
                let title_now = format!("Round {round}");
                match round % 3 {
                    0 => {
                        let response = client
                            .patch(format!("{writer}/movies/{movie_id}"))
                            .bearer_auth(&token)
                            .header("If-Match", "*")
                            .header("Content-Type", "application/merge-patch+json")
                            .body(json!({ "title": title_now }).to_string())
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(response.status(), 200);
                    }
                    1 => {
                        let (services, title_now) = (services.clone(), title_now.clone());
                        tokio::task::spawn_blocking(move || {
                            rename(&services, movie_id, &title_now);
                        })
                        .await
                        .unwrap();
                    }
                    _ => {
                        let dsn = dsn.clone();
                        let sql = format!(
                            "UPDATE myapi.movies SET title = '{title_now}' WHERE movie_id = {movie_id}"
                        );
                        tokio::task::spawn_blocking(move || psql(&dsn, &sql))
                            .await
                            .unwrap();
                    }
                }
                tokio::time::sleep(MAX_STALENESS).await;
                let seen = title(&client, &other, &token, movie_id).await;
                if seen != title_now {
                    stale.push((round, seen));
                }
            }
            stale
        });
    }
    let stale: Vec<_> = lanes.join_all().await.into_iter().flatten().collect();
    let stats = other_served.movies.cache().stats();
    println!(
        "{rounds} rounds: {} stale; the reader's cache: {stats:?}",
        stale.len()
    );
    assert!(stale.is_empty(), "{} stale reads: {stale:?}", stale.len());
    assert!(
        stats.hits >= rounds as u64 / 4,
        "too few reads came from the cache to prove anything: {stats:?}"
    );
}

/// Listing pages carry an `ETag` that any change to the movies moves, and answer a current
/// `If-None-Match` with 304; with the cache on and off, on both backends.
#[tokio::test]
async fn listing_pages_answer_304_until_a_movie_changes() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for enabled in [true, false] {
            let Some(db) = TestDb::new(backend) else {
                continue;
            };
            let app = spawn_app_with(db, |settings: &mut Settings| {
                settings.cache.enabled = enabled;
            })
            .await;
            app.import_sample().await;
            let token = reader(&app).await;
            if enabled {
                trusted(&app.client, &app.address, &token, &app.served).await;
            }
            let context = format!("{backend:?}, cache enabled: {enabled}");
            let page = app.get_authed(SOME_MOVIES, &token).await;
            assert_eq!(page.status(), 200, "{context}");
            let headers = page.headers().clone();
            assert_eq!(headers["cache-control"], "private, no-cache", "{context}");
            let etag = headers["etag"].to_str().unwrap().to_owned();
            // Weak: the generation is read apart from the rows.
            let opaque = etag.strip_prefix("W/").unwrap_or_default().to_owned();
            assert!(opaque.starts_with("\"g"), "{context}: {etag}");

            for held in [etag.clone(), opaque, format!("\"x\", {etag}")] {
                let again = conditional(&app, &token, SOME_MOVIES, &held).await;
                assert_eq!(again.status(), 304, "{context}: {held}");
                assert_eq!(again.headers()["etag"], etag.as_str(), "{context}");
                assert_eq!(again.headers()["cache-control"], "private, no-cache");
                assert!(again.bytes().await.unwrap().is_empty());
            }

            let movie = app.get_authed("/movies/4", &token).await;
            assert_eq!(movie.headers()["cache-control"], "private, no-cache");
            let movie_etag = movie.headers()["etag"].to_str().unwrap().to_owned();
            let movie_again = conditional(&app, &token, "/movies/4", &movie_etag).await;
            assert_eq!(movie_again.status(), 304, "{context}");

            rename(&app.services, 4, "Changed");
            tokio::time::sleep(MAX_STALENESS).await;
            let changed = conditional(&app, &token, SOME_MOVIES, &etag).await;
            assert_eq!(changed.status(), 200, "{context}");
            let new_etag = changed.headers()["etag"].to_str().unwrap().to_owned();
            assert_ne!(new_etag, etag, "{context}");
            let body: Value = changed.json().await.unwrap();
            assert_eq!(body[3]["title"], "Changed", "{context}");
            let unchanged = conditional(&app, &token, SOME_MOVIES, &new_etag).await;
            assert_eq!(unchanged.status(), 304, "{context}");
        }
    }
}

async fn conditional(app: &TestApp, token: &str, path: &str, held: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(token)
        .header("If-None-Match", held)
        .send()
        .await
        .unwrap()
}

//! The database under the fleet: a synchronous streaming standby that takes over when the
//! primary dies, and a backup restored into a cluster of its own.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::load::{Load, READ_PATH, Work};
use super::stack::pg_cluster::PgCluster;
use super::stack::{self, loopback};
use super::{Deployment, EDITOR, Instance, PASSWORD, READER, READY_LIMIT};
use super::{free_port, http, json_string, myapi_cli};

/// Connections reading, and creating movies, through nginx during the failover.
const FAILOVER_READERS: usize = 8;
const FAILOVER_WRITERS: usize = 4;
/// From the primary's death to the promotion: what an orchestrator's detection takes.
const DETECTION: Duration = Duration::from_secs(1);
/// Longest any request may take during the failover: above the instances' own waits
/// (a pooled connection 3 s, a statement 5 s), far below nginx's 30 s.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);
/// Longest each instance may take to serve again once the standby is promoted.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);
const TITLE_PREFIX: &str = "failover";

/// Makes `standby` a synchronous streaming replica of running `primary`: a commit on the
/// primary is acknowledged only once the standby has it on disk, so a failover loses no
/// acknowledged write.
pub(super) fn start_standby(primary: &PgCluster, standby: &PgCluster) -> Result<(), String> {
    // Written now, so the base backup carries it (a promoted standby must clear it), and
    // applied only once the standby streams: before that, every commit would wait for it.
    primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")?;
    standby.replicate(primary)?;
    standby.start()?;
    wait_for(
        primary,
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
    )?;
    primary.sql("SELECT pg_reload_conf()")?;
    wait_for(
        primary,
        "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
    )
}

/// Polls `count_query` until it counts 1.
fn wait_for(cluster: &PgCluster, count_query: &str) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if cluster.sql(count_query)? == "1" {
            return Ok(());
        }
        if started.elapsed() > READY_LIMIT {
            return Err(format!(
                "the standby never came up: `{count_query}` stayed 0"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A token for `email`, from instance `addr` directly.
fn token(addr: SocketAddr, email: &str) -> Result<String, String> {
    let body = format!(
        "grant_type=password&username={}&password={}",
        http::encode(email),
        http::encode(PASSWORD)
    );
    let response = http::Client::new(addr)
        .send(
            "POST",
            "/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .map_err(|e| format!("POST /token: {e}"))?;
    json_string(&response.text(), "access_token")
        .filter(|_| response.status == 200)
        .ok_or_else(|| {
            format!(
                "POST /token answered {}: {}",
                response.status,
                response.text()
            )
        })
}

impl Deployment {
    /// Kills the primary under a load of reads and creates through nginx, promotes the
    /// standby, and measures: every acknowledged create is on the new primary; clients got
    /// only 2xx or 503 with `Retry-After`, each within [`ANSWER_LIMIT`]; the time until
    /// creates succeed again; and each instance serves by itself again (`/ready`, a create,
    /// a login, which charges the login budget), without a restart.
    pub(super) fn failover(&mut self) -> Result<String, String> {
        let reader = self.bearer()?;
        let editor = format!("Bearer {}", token(self.stack.instances[0].addr(), EDITOR)?);
        let nginx = loopback(self.load_port);
        let reads = Load::start(nginx, &reader, Work::Read, FAILOVER_READERS, None, true);
        let writes = Load::start(
            nginx,
            &editor,
            Work::Create {
                prefix: TITLE_PREFIX,
            },
            FAILOVER_WRITERS,
            None,
            true,
        );
        std::thread::sleep(Duration::from_secs(2));
        // Replicating synchronously right now, or zero lost writes would prove nothing.
        let sync = "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'";
        if self.stack.cluster.sql(sync)? != "1" {
            return Err("the standby was not synchronous when the primary was to stop".to_owned());
        }
        self.stack.cluster.stop()?;
        let crashed = writes.elapsed();
        std::thread::sleep(DETECTION);
        let promoting = Instant::now();
        self.stack.standby.promote()?;
        // The base backup brought the primary's setting: with no standby of its own, every
        // commit would wait for one.
        self.stack
            .standby
            .sql("ALTER SYSTEM SET synchronous_standby_names = ''")?;
        self.stack.standby.sql("SELECT pg_reload_conf()")?;
        let promoted = writes.elapsed();
        let promotion_took = promoting.elapsed();

        let mut recovery = Vec::new();
        for instance in &self.stack.instances {
            recovery.push(recovered(instance, &editor, promoting)?);
        }
        std::thread::sleep(Duration::from_secs(2));
        let (reads, writes) = (reads.finish(), writes.finish());

        let present: HashSet<String> = self
            .stack
            .standby
            .sql(&format!(
                "SELECT title FROM myapi.movies WHERE title LIKE '{TITLE_PREFIX} %'"
            ))?
            .lines()
            .map(str::to_owned)
            .collect();
        let lost: Vec<&String> = writes
            .acknowledged
            .iter()
            .filter(|title| !present.contains(*title))
            .collect();
        // The first create sent after the primary stopped that succeeded.
        let writing_again = writes
            .answers
            .iter()
            .filter(|(sent, ok)| *ok && *sent > crashed)
            .map(|(at, _)| *at)
            .min();
        let mut problems = Vec::new();
        if !lost.is_empty() {
            problems.push(format!(
                "{} acknowledged creates are missing after the failover, e.g. {:?}",
                lost.len(),
                &lost[..lost.len().min(5)]
            ));
        }
        for (what, result) in [("reads", &reads), ("creates", &writes)] {
            let unexpected: Vec<String> = result
                .failures
                .iter()
                .filter(|(kind, _)| kind.as_str() != "HTTP 503")
                .map(|(kind, n)| format!("{n} × {kind}"))
                .collect();
            if !unexpected.is_empty() {
                problems.push(format!(
                    "{what} got other than 2xx or 503 with Retry-After: {}",
                    unexpected.join(", ")
                ));
            }
            if result.slowest > ANSWER_LIMIT {
                problems.push(format!(
                    "a request of the {what} took {:.1} s (at most {ANSWER_LIMIT:?})",
                    result.slowest.as_secs_f64()
                ));
            }
        }
        let Some(writing_again) = writing_again else {
            problems.push("no create succeeded after the primary stopped".to_owned());
            return Err(problems.join("; "));
        };
        let summary = format!(
            "primary stopped hard under {FAILOVER_READERS} reading and {FAILOVER_WRITERS} \
             creating connections through nginx; standby promoted {DETECTION:?} later (took \
             {:.1} s); creates succeed again {:.1} s after the primary stopped ({:.1} s after \
             the promotion); {} of {} creates acknowledged, all present afterwards: {} lost; \
             meanwhile creates got {}, reads {} (of {}), slowest answer {:.1} s; {}",
            promotion_took.as_secs_f64(),
            (writing_again - crashed).as_secs_f64(),
            writing_again.saturating_sub(promoted).as_secs_f64(),
            writes.acknowledged.len(),
            writes.sent,
            lost.len(),
            or_none(&writes.failures_listed()),
            or_none(&reads.failures_listed()),
            reads.sent,
            reads.slowest.max(writes.slowest).as_secs_f64(),
            recovery.join("; ")
        );
        if problems.is_empty() {
            Ok(summary)
        } else {
            Err(format!("{}; {summary}", problems.join("; ")))
        }
    }

    /// README's backup and restore on the fleet's database: `pg_dump` of the primary (the
    /// promoted standby, after the failover check), `pg_restore` into a fresh cluster,
    /// `myapi-cli migrate`, and an instance on it that serves the same movie, counts the
    /// same movies, and logs the same user in with the same password.
    pub(super) fn backup_and_restore(&mut self) -> Result<String, String> {
        let primary = &self.stack.standby;
        let temp = self.stack.temp.path.clone();
        let dump = temp.join("myapi.dump");
        stack::run(
            std::process::Command::new(primary.program("pg_dump"))
                .args(["--format=custom", "--file"])
                .arg(&dump)
                .arg(primary.dsn()),
        )
        .map_err(|e| format!("pg_dump: {e}"))?;
        let dump_size = std::fs::metadata(&dump).map(|m| m.len()).unwrap_or(0);
        let restored = PgCluster::new(primary.bin(), temp.join("pg-restored"))?;
        restored.init()?;
        restored.start()?;
        stack::run(
            std::process::Command::new(restored.program("pg_restore"))
                .args(["--no-owner", "--exit-on-error", "--dbname"])
                .arg(restored.dsn())
                .arg(&dump),
        )
        .map_err(|e| format!("pg_restore: {e}"))?;
        let count = "SELECT count(*) FROM myapi.movies";
        let (movies, restored_movies) = (primary.sql(count)?, restored.sql(count)?);

        let mut instance = Instance {
            name: "restored".to_owned(),
            port: free_port()?,
            metrics_port: free_port()?,
            env: self.stack.instances[0].env.clone(),
            process: None,
        };
        for (key, value) in &mut instance.env {
            match key.as_str() {
                "MYAPI_DATABASE__DSN" => *value = restored.dsn(),
                "MYAPI_SERVER__PORT" => *value = instance.port.to_string(),
                "MYAPI_METRICS__ADDRESS" => *value = format!("127.0.0.1:{}", instance.metrics_port),
                _ => {}
            }
        }
        let migrated = myapi_cli(&self.bin, &temp, &restored.dsn(), &["migrate"], None);
        let result = migrated.and_then(|()| {
            instance.start(&self.bin, &temp)?;
            // A token names its session, which lives in one database: each side logs in
            // on its own (the restored one with the password the dump carried).
            let fleet_addr = self.stack.instances[0].addr();
            let fleet_bearer = format!("Bearer {}", token(fleet_addr, READER)?);
            let bearer = format!("Bearer {}", token(instance.addr(), READER)?);
            let fleet = http::get(fleet_addr, READ_PATH, &[("Authorization", &fleet_bearer)])
                .map_err(|e| format!("GET {READ_PATH} on the fleet: {e}"))?;
            let copy = http::get(instance.addr(), READ_PATH, &[("Authorization", &bearer)])
                .map_err(|e| format!("GET {READ_PATH} on the restored instance: {e}"))?;
            if copy.status != 200 || copy.body != fleet.body {
                return Err(format!(
                    "GET {READ_PATH}: the fleet answered {} {}, the restored instance {} {}",
                    fleet.status,
                    fleet.text(),
                    copy.status,
                    copy.text()
                ));
            }
            if movies != restored_movies {
                return Err(format!("{restored_movies} movies restored of {movies}"));
            }
            Ok(format!(
                "pg_dump --format=custom ({} KiB) restored by pg_restore into a fresh cluster; \
                 an instance on it serves {READ_PATH} as the fleet does, counts the same {movies} \
                 movies, and logs {READER} in with the same password",
                dump_size / 1024
            ))
        });
        instance.stop();
        drop(restored);
        result
    }
}

fn or_none(listed: &str) -> &str {
    if listed.is_empty() {
        "no failure"
    } else {
        listed
    }
}

/// Waits until `instance` answers `/ready` again after the promotion, then creates a movie
/// and logs in on it directly; how long it took.
fn recovered(instance: &Instance, editor: &str, promoting: Instant) -> Result<String, String> {
    loop {
        match http::get(instance.addr(), "/ready", &[]) {
            Ok(response) if response.status == 200 => break,
            _ if promoting.elapsed() > RECOVERY_LIMIT => {
                return Err(format!(
                    "{} did not answer /ready with 200 within {RECOVERY_LIMIT:?} of the promotion",
                    instance.name
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let ready = promoting.elapsed();
    let body = format!(
        r#"{{"title":"{TITLE_PREFIX} {}","released":2026,"rating":7.5}}"#,
        instance.name
    );
    let created = http::Client::new(instance.addr())
        .send(
            "POST",
            "/movies/",
            &[
                ("Authorization", editor),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .map_err(|e| format!("POST /movies/ on {}: {e}", instance.name))?;
    if created.status != 201 {
        return Err(format!(
            "{} answered a create with {} after the failover: {}",
            instance.name,
            created.status,
            created.text()
        ));
    }
    token(instance.addr(), READER)
        .map_err(|e| format!("{} after the failover: {e}", instance.name))?;
    Ok(format!(
        "{} ready {:.1} s after the promotion, then created and logged in",
        instance.name,
        ready.as_secs_f64()
    ))
}

//! The checks' load: connections that each send one request after another and record what
//! came back. The client never resends a request by itself ([`http`]), so a lost one shows.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http;

/// A movie of data/movies.csv, read by the load.
pub const READ_PATH: &str = "/movies/1";

/// What each connection sends.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// `GET READ_PATH`.
    Read,
    /// `POST /movies/`, each movie titled `{prefix} {connection}-{n}`: distinct, so each
    /// acknowledged one can be looked for afterwards.
    Create { prefix: &'static str },
}

/// What a load run saw.
pub struct LoadResult {
    pub sent: u64,
    pub elapsed: Duration,
    /// "HTTP 502", "transport: …" → count.
    pub failures: BTreeMap<String, u64>,
    /// The titles of the movies created ([`Work::Create`] answered 201).
    pub acknowledged: Vec<String>,
    /// When each request was sent, from the start, and whether it succeeded.
    pub answers: Vec<(Duration, bool)>,
    /// The longest any request took to be answered or to fail.
    pub slowest: Duration,
}

impl LoadResult {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    pub fn failures_listed(&self) -> String {
        self.failures
            .iter()
            .map(|(kind, n)| format!("{n} × {kind}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn summary(&self) -> String {
        format!("{} requests sent, {} failed", self.sent, self.failed())
    }
}

#[derive(Default)]
struct Record {
    failures: BTreeMap<String, u64>,
    acknowledged: Vec<String>,
    answers: Vec<(Duration, bool)>,
    slowest: Duration,
}

/// `connections` connections sending `work`: until [`Load::finish`] when `per_connection`
/// is `None`, else that many each.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    sent: Arc<AtomicU64>,
    record: Arc<Mutex<Record>>,
    started: Instant,
    open_ended: bool,
}

impl Load {
    /// With `close`, every request asks for its connection to be closed after it, so that
    /// nginx reloading (whose old workers close idle keep-alive connections, racing a
    /// request just sent on one) cannot fail a request.
    pub fn start(
        addr: SocketAddr,
        bearer: &str,
        work: Work,
        connections: usize,
        per_connection: Option<u64>,
        close: bool,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let record = Arc::new(Mutex::new(Record::default()));
        let started = Instant::now();
        let threads = (0..connections)
            .map(|connection| {
                let (stop, sent, record) = (stop.clone(), sent.clone(), record.clone());
                let bearer = bearer.to_owned();
                std::thread::spawn(move || {
                    let note = |sent_at: Instant, outcome: Result<Option<String>, String>| {
                        let Ok(mut record) = record.lock() else {
                            return;
                        };
                        record.slowest = record.slowest.max(sent_at.elapsed());
                        record
                            .answers
                            .push((sent_at.duration_since(started), outcome.is_ok()));
                        match outcome {
                            Ok(Some(title)) => record.acknowledged.push(title),
                            Ok(None) => {}
                            Err(kind) => *record.failures.entry(kind).or_insert(0) += 1,
                        }
                    };
                    let client = http::Client::new(addr);
                    let mut done = 0;
                    while !stop.load(Ordering::Relaxed) && per_connection.is_none_or(|n| done < n) {
                        let sent_at = Instant::now();
                        sent.fetch_add(1, Ordering::Relaxed);
                        done += 1;
                        let mut headers = vec![("Authorization", bearer.as_str())];
                        if close {
                            headers.push(("Connection", "close"));
                        }
                        let outcome = match work {
                            Work::Read => client
                                .send("GET", READ_PATH, &headers, b"")
                                .map(|response| (response, None)),
                            Work::Create { prefix } => {
                                let title = format!("{prefix} {connection}-{done}");
                                headers.push(("Content-Type", "application/json"));
                                let body = format!(
                                    r#"{{"title":"{title}","released":2026,"rating":7.5}}"#
                                );
                                client
                                    .send("POST", "/movies/", &headers, body.as_bytes())
                                    .map(|response| (response, Some(title)))
                            }
                        };
                        let outcome = judge(outcome);
                        let failed = outcome.is_err();
                        note(sent_at, outcome);
                        if failed {
                            // No tight loop against a server that refuses everything.
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            threads,
            sent,
            record,
            started,
            open_ended: per_connection.is_none(),
        }
    }

    /// Time since the load started: the clock of [`LoadResult::answers`].
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops an open-ended load, or waits for a fixed one to send all its requests.
    pub fn finish(self) -> LoadResult {
        if self.open_ended {
            self.stop.store(true, Ordering::Relaxed);
        }
        for thread in self.threads {
            let _ = thread.join();
        }
        let record = self
            .record
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        LoadResult {
            sent: self.sent.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
            failures: record.failures,
            acknowledged: record.acknowledged,
            answers: record.answers,
            slowest: record.slowest,
        }
    }
}

/// A 2xx is a success (a created movie's title, if one was sent); anything else is a
/// failure of a kind. A 503 without `Retry-After` is a kind of its own: it must carry one.
fn judge(
    outcome: Result<(http::Response, Option<String>), http::CallError>,
) -> Result<Option<String>, String> {
    match outcome {
        Ok((r, title)) if (200..300).contains(&r.status) => Ok(title),
        Ok((r, _)) if r.status == 503 && r.header("retry-after").is_none() => {
            Err("HTTP 503 without Retry-After".to_owned())
        }
        Ok((r, _)) => Err(format!("HTTP {}", r.status)),
        Err(e) => Err(e.to_string()),
    }
}

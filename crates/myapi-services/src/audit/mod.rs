//! The `audit` service: the trail of security-relevant events.
//!
//! Each event is a row of `audit_events` written by [`record`] on the connection of the
//! change it records, inside that change's transaction, so the trail and the data cannot
//! disagree; and a log line at info level, target `audit`. Events without a change of their
//! own (a failed login) are written alone. Throttled answers (429 and 503 from `/token` and
//! `/revoke`) are not one row each: [`AuditService::count_throttled`] counts them in memory
//! per client network and minute, and one row per network and minute says how many
//! ([`Tally`]).
//!
//! Rows keep no foreign key to `users`: a deleted user's events stay, found by the user id
//! or the email they were recorded with. [`AuditService::purge`] bounds the table by age
//! (`audit.retention_days`).

mod data;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) use data::user_id_of;
pub use data::{AuditDataManager, AuditFilter};
pub use myapi_schemas::AuditEvent;

use ipnet::IpNet;
use myapi_models::DbConnection;
use myapi_models::rows::{AuditEventRow, NewAuditEventRow};
use myapi_schemas::AuditEventSchema;

use crate::config::AuditSettings;
use crate::database::Database;
use crate::{InvalidField, ServiceError, request_context};

/// Who acted: stored as the user's id, `cli` or `anonymous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The admin command line (and anything else calling the user administration methods).
    Cli,
    /// The user whose credentials the request carried.
    User(i32),
    /// A request without valid credentials: a failed login, a reused refresh token.
    Anonymous,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cli => f.write_str("cli"),
            Self::User(user_id) => user_id.fmt(f),
            Self::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// One event to record. The request id is the current request's ([`request_context`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    event: AuditEvent,
    actor: Actor,
    subject_user_id: Option<i32>,
    subject: Option<String>,
    client: Option<String>,
    detail: Option<String>,
    /// Whether [`record`] completes the subject from `users`.
    look_up: bool,
}

impl AuditEntry {
    pub fn new(event: AuditEvent, actor: Actor) -> Self {
        Self {
            event,
            actor,
            subject_user_id: None,
            subject: None,
            client: None,
            detail: None,
            look_up: true,
        }
    }

    /// About the user with this id; [`record`] adds their email.
    pub fn user_id(mut self, user_id: i32) -> Self {
        self.subject_user_id = Some(user_id);
        self
    }

    /// About the user with this (lower-case) email; [`record`] adds their id, if they exist.
    pub fn email(mut self, email: &str) -> Self {
        self.subject = Some(email.to_owned());
        self
    }

    /// About what no user is: `subject` is stored as given and never looked up.
    pub(crate) fn unknown_subject(mut self, subject: String) -> Self {
        self.subject = Some(subject);
        self.look_up = false;
        self
    }

    pub fn client(mut self, client: IpAddr) -> Self {
        self.client = Some(client.to_canonical().to_string());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The same subject, actor and client, for another event (and without the detail).
    pub fn with_event(&self, event: AuditEvent) -> Self {
        Self {
            event,
            detail: None,
            ..self.clone()
        }
    }

    pub fn event(&self) -> AuditEvent {
        self.event
    }
}

/// Writes `entry` on `conn`, inside the caller's transaction, and logs it. The subject's id
/// or email, whichever the entry lacks, is read from `users` in the same transaction.
pub(crate) fn record(conn: &mut DbConnection, entry: &AuditEntry) -> Result<(), ServiceError> {
    let (mut subject_user_id, mut subject) = (entry.subject_user_id, entry.subject.clone());
    if entry.look_up {
        match (subject_user_id, &subject) {
            (None, Some(email)) => subject_user_id = data::user_id_of(conn, email)?,
            (Some(user_id), None) => subject = data::email_of(conn, user_id)?,
            _ => {}
        }
    }
    let request_id = request_context::current();
    let row = NewAuditEventRow {
        at: unix_now(),
        event: entry.event.as_str(),
        actor: &entry.actor.to_string(),
        subject_user_id,
        subject: subject.as_deref(),
        client: entry.client.as_deref(),
        request_id: request_id.as_deref(),
        count: 1,
        detail: entry.detail.as_deref(),
    };
    data::insert(conn, &row)?;
    log_row(&row);
    Ok(())
}

/// Writes `entry` in a transaction of its own (blocking): for events that change nothing
/// else.
pub(crate) fn record_alone(
    data: &AuditDataManager,
    entry: &AuditEntry,
) -> Result<(), ServiceError> {
    data.in_transaction(|conn| record(conn, entry))
}

/// The audit log line: the event, then each column that has a value.
fn log_row(row: &NewAuditEventRow<'_>) {
    let mut line = format!("{} actor={}", row.event, row.actor);
    if let Some(user_id) = row.subject_user_id {
        line.push_str(&format!(" subject_user_id={user_id}"));
    }
    for (name, value) in [
        ("subject", row.subject),
        ("client", row.client),
        ("detail", row.detail),
    ] {
        if let Some(value) = value {
            line.push_str(&format!(" {name}={value:?}"));
        }
    }
    if row.count != 1 {
        line.push_str(&format!(" count={}", row.count));
    }
    log::info!(target: "audit", "{line}");
}

/// A throttled answer, as its count's `detail` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottledAnswer {
    /// `/token` answered 429: a login budget is used up.
    TokenTooManyRequests,
    /// `/token` answered 503: every hashing thread and queue place is taken.
    TokenBusy,
    /// `/revoke` answered 429.
    RevokeTooManyRequests,
}

impl ThrottledAnswer {
    fn as_str(self) -> &'static str {
        match self {
            Self::TokenTooManyRequests => "429 /token",
            Self::TokenBusy => "503 /token",
            Self::RevokeTooManyRequests => "429 /revoke",
        }
    }
}

/// Most (minute, answer, network) counts held between flushes. Past it, further networks
/// are counted together under no network, so no answer goes uncounted and memory stays
/// bounded (a few hundred KiB).
pub const MAX_THROTTLED_KEYS: usize = 10_000;
/// How often the flusher looks for minutes that have ended.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct TallyKey {
    /// Unix seconds at the start of the minute.
    minute: i64,
    answer: ThrottledAnswer,
    /// `None`: networks past [`MAX_THROTTLED_KEYS`].
    network: Option<IpNet>,
}

/// Throttled answers counted in memory until written.
///
/// A thread of its own writes each minute's counts once the minute is over, and reads of
/// the trail write what is counted so far: a count may thus be written in parts, each added
/// to its minute's row, so one network has one row per minute. On PostgreSQL, instances
/// sharing the database add to the same rows the same way (one racing insert can make a
/// second row for a minute; the counts still add up). What is counted when the process ends
/// without its services being dropped (a crash) is lost: at most a minute.
#[derive(Debug, Default)]
struct Tally {
    counts: Mutex<HashMap<TallyKey, u32>>,
    /// Held for a whole flush, so flushes run one at a time: the stop's flush waits for the
    /// thread's write under way (and gives up after its limit), rather than finding the
    /// counts already taken and answering that all is written while that write hangs on a
    /// database that stopped answering.
    writing: Mutex<()>,
}

impl Tally {
    fn add(&self, minute: i64, answer: ThrottledAnswer, network: IpNet, count: u32) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = TallyKey {
            minute,
            answer,
            network: Some(network),
        };
        if !counts.contains_key(&key) && counts.len() >= MAX_THROTTLED_KEYS {
            key.network = None;
        }
        let slot = counts.entry(key).or_insert(0);
        *slot = slot.saturating_add(count);
    }

    /// Writes the counts of minutes before `before` (all of them with `None`). What cannot
    /// be written is counted again.
    /// Writes the counts of minutes before `before` (all with `None`). When another flush is
    /// under way, waits for it if `wait` (the stop), or else leaves the counts to it (a
    /// read of the trail, which must not queue behind a write that may hang).
    fn flush(
        &self,
        data: &AuditDataManager,
        before: Option<i64>,
        wait: bool,
    ) -> Result<(), ServiceError> {
        let _writing = match self.writing.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) if !wait => return Ok(()),
            Err(TryLockError::WouldBlock) => {
                self.writing.lock().unwrap_or_else(PoisonError::into_inner)
            }
        };
        let taken: Vec<(TallyKey, u32)> = {
            let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            let due: Vec<TallyKey> = counts
                .keys()
                .filter(|key| before.is_none_or(|before| key.minute < before))
                .copied()
                .collect();
            due.into_iter()
                .filter_map(|key| counts.remove(&key).map(|count| (key, count)))
                .collect()
        };
        let mut pending = taken.into_iter();
        while let Some((key, count)) = pending.next() {
            let client = key.network.map(|network| network.to_string());
            let row = NewAuditEventRow {
                at: key.minute,
                event: AuditEvent::LoginThrottled.as_str(),
                actor: "anonymous",
                subject_user_id: None,
                subject: None,
                client: client.as_deref(),
                request_id: None,
                count: i32::try_from(count).unwrap_or(i32::MAX),
                detail: Some(key.answer.as_str()),
            };
            if let Err(error) = data.add_count(&row) {
                let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
                for (key, count) in std::iter::once((key, count)).chain(pending) {
                    let slot = counts.entry(key).or_insert(0);
                    *slot = slot.saturating_add(count);
                }
                return Err(error);
            }
            log_row(&row);
        }
        Ok(())
    }
}

/// Writes ended minutes' counts every [`FLUSH_EVERY`]; once the services are gone (it holds
/// the last reference), writes the rest and ends.
fn run_flusher(tally: Arc<Tally>, data: AuditDataManager) {
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let last = Arc::strong_count(&tally) == 1;
        let before = (!last).then(|| minute_of(unix_now()));
        // While a read of the trail or the stop is writing, this round leaves it to them.
        if let Err(error) = tally.flush(&data, before, last) {
            log::warn!(target: "audit", "throttled answers not written yet: {}", crate::error_chain(&error));
        }
        if last {
            return;
        }
    }
}

/// A checked `GET /audit/` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// The page holds ids above this (0: from the first).
    pub after: i64,
    pub user: Option<i32>,
    pub event: Option<AuditEvent>,
    pub limit: u32,
}

/// One page of events, and the cursor of the next (this page's last id), if one follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    pub events: Vec<AuditEventSchema>,
    pub next_after: Option<i64>,
}

/// Reads and bounds the trail, and counts throttled answers.
#[derive(Debug, Clone)]
pub struct AuditService {
    data: AuditDataManager,
    settings: AuditSettings,
    throttled: Arc<Tally>,
}

impl AuditService {
    /// Also starts the thread that writes throttled answers' counts.
    pub fn new(db: Database, settings: &AuditSettings) -> Self {
        let data = AuditDataManager::new(db);
        let throttled = Arc::new(Tally::default());
        let flusher = (Arc::clone(&throttled), data.clone());
        let spawned = std::thread::Builder::new()
            .name("audit-flush".into())
            .spawn(move || run_flusher(flusher.0, flusher.1));
        if let Err(error) = spawned {
            log::warn!(target: "audit", "no flusher thread ({error}): throttled answers are written when the trail is read");
        }
        Self {
            data,
            settings: settings.clone(),
            throttled,
        }
    }

    pub fn settings(&self) -> &AuditSettings {
        &self.settings
    }

    /// Counts a throttled answer to the client network `network` (the login budget's:
    /// [`crate::auth::AuthService::client_network`]). In memory: call it anywhere.
    pub fn count_throttled(&self, answer: ThrottledAnswer, network: IpNet) {
        let minute = minute_of(unix_now());
        self.throttled.add(minute, answer, network, 1);
    }

    /// Writes every throttled answer counted so far, after any write under way (blocking).
    pub fn flush_throttled(&self) -> Result<(), ServiceError> {
        self.throttled.flush(&self.data, None, true)
    }

    /// One page of events by id, with what this process has counted written first
    /// (blocking).
    pub fn page(&self, query: &AuditQuery) -> Result<AuditPage, ServiceError> {
        self.throttled.flush(&self.data, None, false)?;
        let filter = AuditFilter {
            after: query.after,
            subject_user_id: query.user,
            event: query.event.map(AuditEvent::as_str),
            ..AuditFilter::default()
        };
        let limit = i64::from(query.limit);
        let mut rows = self.data.load(&filter, Some(limit + 1))?;
        let has_more = rows.len() as i64 > limit;
        rows.truncate(query.limit as usize);
        Ok(AuditPage {
            next_after: has_more.then(|| rows.last().map(|row| row.id)).flatten(),
            events: rows.iter().map(to_schema).collect(),
        })
    }

    /// Hands `each` every event since `since` (see [`parse_since`]) about `user` (an id or
    /// an email) of kind `event`, by id, until it breaks (blocking; for the CLI). An email
    /// also finds the events of a deleted user recorded with it.
    pub fn list(
        &self,
        since: Option<&str>,
        user: Option<&str>,
        event: Option<&str>,
        mut each: impl FnMut(AuditEventSchema) -> ControlFlow<()>,
    ) -> Result<(), ServiceError> {
        let now = unix_now();
        let since = since.map(|raw| parse_since(raw, now)).transpose();
        let event = event
            .map(|raw| {
                raw.parse::<AuditEvent>()
                    .map_err(|e| InvalidField::new("event", e))
            })
            .transpose();
        let (since, event) = match (since, event) {
            (Ok(since), Ok(event)) => (since, event),
            (since, event) => {
                return Err(ServiceError::Invalid(
                    [since.err(), event.err()].into_iter().flatten().collect(),
                ));
            }
        };
        let mut filter = AuditFilter {
            since,
            event: event.map(AuditEvent::as_str),
            ..AuditFilter::default()
        };
        match user.map(str::trim) {
            None => {}
            Some(raw) => match raw.parse::<i32>() {
                Ok(user_id) => filter.subject_user_id = Some(user_id),
                Err(_) => {
                    let email = raw.to_lowercase();
                    filter.subject_user_id = self.data.user_id_of(&email)?;
                    filter.subject = Some(email);
                }
            },
        }
        // A page at a time, so a long trail is never all in memory.
        let batch = i64::from(self.settings.max_page_size.get());
        loop {
            let rows = self.data.load(&filter, Some(batch))?;
            for row in &rows {
                if each(to_schema(row)).is_break() {
                    return Ok(());
                }
            }
            match rows.last() {
                Some(last) if rows.len() as i64 == batch => filter.after = last.id,
                _ => return Ok(()),
            }
        }
    }

    /// Deletes the events older than `audit.retention_days` and returns how many went;
    /// `None` when the setting is 0, which keeps every event (blocking).
    pub fn purge(&self) -> Result<Option<usize>, ServiceError> {
        match retention_cutoff(self.settings.retention_days, unix_now()) {
            Some(before) => self.purge_before(before).map(Some),
            None => Ok(None),
        }
    }

    /// Deletes the events before `before` (Unix seconds) and returns how many went
    /// (blocking).
    pub fn purge_before(&self, before: i64) -> Result<usize, ServiceError> {
        self.data.purge(before)
    }
}

/// The Unix seconds before which events are older than `retention_days` at `now`; `None`
/// for 0, which keeps them all.
fn retention_cutoff(retention_days: u32, now: i64) -> Option<i64> {
    (retention_days > 0).then(|| now - i64::from(retention_days) * 86_400)
}

/// When `--since` starts, as Unix seconds: an RFC 3339 time (`2026-12-06T00:00:00Z`), Unix
/// seconds, or a duration before `now` (`24h`, `7d`, `90m`, `1h 30m`; a day is 24 hours).
pub fn parse_since(raw: &str, now: i64) -> Result<i64, InvalidField> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<i64>() {
        return Ok(secs);
    }
    if let Ok(at) = raw.parse::<jiff::Timestamp>() {
        return Ok(at.as_second());
    }
    let ago = raw
        .parse::<jiff::Span>()
        .and_then(|span| span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()));
    match ago {
        Ok(ago) if !ago.is_negative() => Ok(now.saturating_sub(ago.as_secs())),
        _ => Err(InvalidField::new(
            "since",
            "must be an RFC 3339 time (2026-12-06T00:00:00Z), Unix seconds, or a duration such as 24h or 7d",
        )),
    }
}

/// Unix seconds as RFC 3339 in UTC.
pub fn format_time(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |at| at.to_string())
}

fn to_schema(row: &AuditEventRow) -> AuditEventSchema {
    AuditEventSchema {
        id: row.id,
        at: format_time(row.at),
        event: row.event.clone(),
        actor: row.actor.clone(),
        subject_user_id: row.subject_user_id,
        subject: row.subject.clone(),
        client: row.client.clone(),
        request_id: row.request_id.clone(),
        count: row.count,
        detail: row.detail.clone(),
    }
}

fn minute_of(secs: i64) -> i64 {
    secs - secs.rem_euclid(60)
}

/// Seconds since the Unix epoch: the clock of every stored time.
pub(crate) fn unix_now() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH);
    elapsed.map_or(0, |elapsed| {
        i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_seconds_and_durations() {
        let now = 1_800_000_000;
        assert_eq!(parse_since("1700000000", now), Ok(1_700_000_000));
        assert_eq!(parse_since("2026-12-06T00:00:00Z", now), Ok(1_796_515_200));
        assert_eq!(parse_since("24h", now), Ok(now - 86_400));
        assert_eq!(parse_since("7d", now), Ok(now - 7 * 86_400));
        assert_eq!(parse_since("1h 30m", now), Ok(now - 5_400));
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("-5m", now).is_err());
    }

    #[test]
    fn times_print_as_rfc_3339() {
        assert_eq!(format_time(1_796_515_200), "2026-12-06T00:00:00Z");
    }

    #[test]
    fn the_tally_is_bounded_and_loses_no_answer() {
        let tally = Tally::default();
        let answer = ThrottledAnswer::TokenTooManyRequests;
        for i in 0..MAX_THROTTLED_KEYS + 50 {
            let network: IpNet = format!("10.{}.{}.0/24", i / 256 % 256, i % 256)
                .parse()
                .unwrap();
            tally.add(60, answer, network, 2);
        }
        let counts = tally.counts.lock().unwrap();
        assert_eq!(counts.len(), MAX_THROTTLED_KEYS + 1);
        let total: u32 = counts.values().sum();
        assert_eq!(total as usize, 2 * (MAX_THROTTLED_KEYS + 50));
    }

    #[test]
    fn retention_is_counted_in_whole_days() {
        assert_eq!(retention_cutoff(0, 1_000_000), None);
        assert_eq!(retention_cutoff(1, 1_000_000), Some(1_000_000 - 86_400));
        assert_eq!(
            retention_cutoff(365, 100_000_000),
            Some(100_000_000 - 365 * 86_400)
        );
    }

    #[test]
    fn minutes_start_on_the_minute() {
        assert_eq!(minute_of(119), 60);
        assert_eq!(minute_of(120), 120);
    }
}

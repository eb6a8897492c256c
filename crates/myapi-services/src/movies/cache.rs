//! The movies' read cache: one per instance. It answers one movie and listing pages from
//! the bytes already serialised, with no database call, and never serves a value more than
//! `cache.max_staleness_ms` behind a committed write, whoever made the write.
//!
//! How it stays exact:
//! - **PostgreSQL.** Triggers on `myapi.movies` notify at commit, at most twice per
//!   transaction (migration `movie_changes`). A session of this instance, outside the pool,
//!   listens ([`watch_postgres`]); a second one sends it heartbeats, every fifth of the bound
//!   while reads come in. PostgreSQL delivers notifications in commit order, so once a
//!   heartbeat sent at `t` is back, every write committed before `t` has been applied here.
//!   Entries are served only while the latest heartbeat back was sent within the bound;
//!   otherwise (connection lost, backend frozen) every read bypasses the cache until a new
//!   session has listened and emptied it.
//! - **SQLite.** Each lookup first reads `PRAGMA data_version` on a connection kept for
//!   it, which changes whenever another connection (the pool, `myapi-cli`) commits. There
//!   is one such connection per core, so async workers looking up at once do not turn each
//!   other away; each keeps the version it last saw, and any of them seeing a change
//!   empties the cache.
//! - **Both.** This instance's own writes invalidate before they are answered.
//! - **The race.** A read that fetched before a write and stores after the write's
//!   invalidation would keep the old value until the next write. Every invalidation raises
//!   a generation; a read takes a [`Ticket`] before it fetches, and stores only if the
//!   generation has not moved since.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::num::NonZero;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use myapi_models::watch::{DataVersion, Listener};
use myapi_models::{ConnectionOptions, DatabaseUrl, DbError};
use serde::Deserialize;

use crate::config::CacheSettings;
use crate::secrets::random_bytes;

/// The channel the `movie_changes` triggers notify.
const CHANNEL: &str = "myapi_movies";
/// How the listening session shows in `pg_stat_activity.application_name`.
pub const LISTENER_NAME: &str = "myapi cache listener";
/// How the session that sends the listener's heartbeats shows there.
const HEARTBEAT_NAME: &str = "myapi cache heartbeat";
/// Bookkeeping per entry beyond its body, tag and key, rounded up: the `Rendered` and its
/// `Arc` (~80 bytes), the shared body's header (32), the tag's and key's own allocations,
/// a map slot at worst load (~90), an order slot (~40), and the allocator's headers.
const ENTRY_OVERHEAD: usize = 384;
/// How often the session looks for notifications: the floor of the invalidation lag.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// With no look-up for this long, heartbeats slow to one per [`IDLE_HEARTBEAT`] (enough to
/// notice a lost connection); the next look-up bypasses the cache and speeds them up again.
const IDLE_AFTER: Duration = Duration::from_secs(1);
const IDLE_HEARTBEAT: Duration = Duration::from_secs(1);
/// A listening session that has not come round its loop for this long is taken for stuck
/// (its backend frozen mid-round-trip) and replaced.
const STALL_LIMIT: Duration = Duration::from_secs(1);
const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// Histogram, seconds: from a change's trigger (`clock_timestamp()`) to this instance
/// dropping what it changed.
pub const INVALIDATION_LAG_METRIC: &str = "myapi_cache_invalidation_lag_seconds";

/// A response body as sent, with what its headers need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// The JSON body.
    pub body: Bytes,
    /// The `ETag`'s opaque tag, unquoted: a movie's version, or a listing's generation.
    pub etag: String,
    /// Whether the tag is weak: a listing's generation is read just before its rows, so
    /// two pages with one tag may differ (never in a way that earns a wrong 304).
    pub weak_etag: bool,
    /// A listing page's next cursor (`None` on the last page and for one movie).
    pub next_after: Option<i32>,
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
    /// The cache could not be trusted (off, or its watch down): the database answers.
    Bypass,
}

/// Counts since start, for `/metrics` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub evictions: u64,
    /// Invalidations applied: this instance's writes, notifications, emptyings.
    pub invalidations: u64,
    /// Held now: bodies, keys and bookkeeping.
    pub bytes: u64,
    pub entries: u64,
    /// Whether lookups may be answered from the cache now.
    pub trusted: bool,
}

/// Taken before a fetch; the fetched value is stored only if no invalidation came between.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(Option<u64>);

/// Which entries a change makes stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These movies, and every listing page.
    Movies(Vec<i32>),
    /// Everything.
    All,
}

/// The cache, shared by clones.
#[derive(Clone)]
pub struct MovieCache {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: bool,
    max_bytes: usize,
    max_staleness: Duration,
    entries: Mutex<Entries>,
    watch: Watch,
    started: Instant,
    /// ms since `started`, plus one, of the latest look-up (0: none yet).
    last_lookup: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
}

/// What says whether the entries are still current.
enum Watch {
    /// No watch needed: this process is the only writer (tests of the cache itself).
    None,
    /// PostgreSQL: the send time (ms since `started`, plus one) of the latest heartbeat
    /// back; 0 while no session is listening.
    Listener { heartbeat: AtomicU64 },
    /// SQLite: connections, each with the `data_version` it last saw (one per core: the
    /// async workers' default count).
    DataVersion(Vec<Mutex<(DataVersion, Option<i64>)>>),
}

#[derive(Default)]
struct Entries {
    movies: Lru<i32>,
    pages: Lru<Arc<str>>,
    /// Raised by every invalidation ([`Ticket`]).
    generation: u64,
    /// The recency clock shared by both maps, so eviction takes the older of their oldest.
    tick: u64,
    evictions: u64,
}

impl MovieCache {
    /// A cache for the database at `url` (no watch is started: see [`watch_postgres`]).
    pub(crate) fn new(settings: &CacheSettings, url: &DatabaseUrl) -> Result<Self, DbError> {
        let watch = match url {
            _ if !settings.enabled => Watch::None,
            DatabaseUrl::Postgres(_) => Watch::Listener {
                heartbeat: AtomicU64::new(0),
            },
            DatabaseUrl::Sqlite(_) => {
                let cores = thread::available_parallelism().map_or(1, NonZero::get);
                let watchers = (0..cores)
                    .map(|_| Ok(Mutex::new((DataVersion::open(url)?, None))))
                    .collect::<Result<_, DbError>>()?;
                Watch::DataVersion(watchers)
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                enabled: settings.enabled,
                max_bytes: settings.max_bytes.get(),
                max_staleness: Duration::from_millis(settings.max_staleness_ms.get()),
                entries: Mutex::default(),
                watch,
                started: Instant::now(),
                last_lookup: AtomicU64::new(0),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                bypasses: AtomicU64::new(0),
            }),
        })
    }

    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    pub(crate) fn movie(&self, movie_id: i32) -> (Lookup, Option<Arc<Rendered>>) {
        self.lookup(|entries, tick| entries.movies.get(&movie_id, tick))
    }

    pub(crate) fn page(&self, key: &str) -> (Lookup, Option<Arc<Rendered>>) {
        self.lookup(|entries, tick| entries.pages.get(key, tick))
    }

    fn lookup(
        &self,
        get: impl FnOnce(&mut Entries, u64) -> Option<Arc<Rendered>>,
    ) -> (Lookup, Option<Arc<Rendered>>) {
        let inner = &self.inner;
        inner
            .last_lookup
            .store(self.now_ms() + 1, Ordering::Relaxed);
        if !inner.enabled || !self.trusted() {
            inner.bypasses.fetch_add(1, Ordering::Relaxed);
            return (Lookup::Bypass, None);
        }
        let mut entries = self.entries();
        entries.tick += 1;
        let tick = entries.tick;
        match get(&mut entries, tick) {
            Some(found) => {
                inner.hits.fetch_add(1, Ordering::Relaxed);
                (Lookup::Hit, Some(found))
            }
            None => {
                inner.misses.fetch_add(1, Ordering::Relaxed);
                (Lookup::Miss, None)
            }
        }
    }

    /// Whether the entries may be served now. On SQLite this reads `data_version` and, if
    /// another connection has committed since the last look, empties the cache first.
    fn trusted(&self) -> bool {
        match &self.inner.watch {
            Watch::None => true,
            Watch::Listener { .. } => self.heard_recently(),
            Watch::DataVersion(watchers) => {
                // Every connection is in use: bypass rather than queue on a worker.
                let Some(mut watch) =
                    watchers
                        .iter()
                        .find_map(|watcher| match watcher.try_lock() {
                            Ok(watch) => Some(watch),
                            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                            Err(TryLockError::WouldBlock) => None,
                        })
                else {
                    return false;
                };
                let (connection, seen) = &mut *watch;
                match connection.read() {
                    Ok(now) if *seen == Some(now) => true,
                    Ok(now) => {
                        self.invalidate(&Change::All);
                        *seen = Some(now);
                        true
                    }
                    Err(error) => {
                        log::warn!("cache: cannot read PRAGMA data_version: {error}");
                        false
                    }
                }
            }
        }
    }

    /// To take before fetching what [`Self::store_movie`] or [`Self::store_page`] will store.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.inner.enabled.then(|| self.entries().generation))
    }

    pub(crate) fn store_movie(&self, ticket: Ticket, movie_id: i32, value: Arc<Rendered>) {
        let size = entry_size(&value, size_of::<i32>());
        self.store(ticket, size, |entries, tick| {
            entries.movies.insert(movie_id, value, tick, size);
        });
    }

    pub(crate) fn store_page(&self, ticket: Ticket, key: &str, value: Arc<Rendered>) {
        let size = entry_size(&value, key.len());
        let key: Arc<str> = key.into();
        self.store(ticket, size, |entries, tick| {
            entries.pages.insert(key, value, tick, size);
        });
    }

    fn store(&self, Ticket(taken): Ticket, size: usize, insert: impl FnOnce(&mut Entries, u64)) {
        if size > self.inner.max_bytes {
            return;
        }
        let mut entries = self.entries();
        if taken != Some(entries.generation) {
            return;
        }
        entries.tick += 1;
        let tick = entries.tick;
        insert(&mut entries, tick);
        entries.evict_to(self.inner.max_bytes);
    }

    /// Drops what `change` makes stale and refuses every store whose ticket came before.
    pub(crate) fn invalidate(&self, change: &Change) {
        if !self.inner.enabled {
            return;
        }
        let dropped = {
            let mut entries = self.entries();
            entries.generation += 1;
            let pages = std::mem::take(&mut entries.pages);
            let movies = match change {
                Change::All => std::mem::take(&mut entries.movies),
                Change::Movies(ids) => {
                    for id in ids {
                        entries.movies.remove(id);
                    }
                    Lru::default()
                }
            };
            (pages, movies)
        };
        drop(dropped); // outside the lock: a large cache takes a while to free
    }

    pub fn stats(&self) -> CacheStats {
        let entries = self.entries();
        let inner = &self.inner;
        CacheStats {
            hits: inner.hits.load(Ordering::Relaxed),
            misses: inner.misses.load(Ordering::Relaxed),
            bypasses: inner.bypasses.load(Ordering::Relaxed),
            evictions: entries.evictions,
            invalidations: entries.generation,
            bytes: (entries.movies.bytes + entries.pages.bytes) as u64,
            entries: (entries.movies.len() + entries.pages.len()) as u64,
            trusted: inner.enabled
                && (!matches!(inner.watch, Watch::Listener { .. }) || self.heard_recently()),
        }
    }

    /// PostgreSQL: whether a heartbeat sent less than the bound ago is back.
    fn heard_recently(&self) -> bool {
        match &self.inner.watch {
            Watch::Listener { heartbeat } => match heartbeat.load(Ordering::Acquire) {
                0 => false,
                sent => self.now_ms() < (sent - 1).saturating_add(self.max_staleness_ms()),
            },
            _ => false,
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn max_staleness_ms(&self) -> u64 {
        u64::try_from(self.inner.max_staleness.as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a heartbeat sent at `sent_ms` as back (PostgreSQL).
    fn heartbeat_back(&self, sent_ms: u64) {
        if let Watch::Listener { heartbeat } = &self.inner.watch {
            heartbeat.fetch_max(sent_ms.saturating_add(1), Ordering::AcqRel);
        }
    }

    /// Stops serving until the next heartbeat of a new session (PostgreSQL).
    fn lose_watch(&self) {
        if let Watch::Listener { heartbeat } = &self.inner.watch {
            heartbeat.store(0, Ordering::Release);
        }
    }

    /// Applies a `myapi_movies` notification; one that cannot be read empties the cache.
    fn apply(&self, payload: &str) {
        #[derive(Deserialize)]
        struct Notice {
            /// Unix seconds at the trigger.
            at: f64,
            ids: Option<Vec<i32>>,
        }
        match serde_json::from_str::<Notice>(payload) {
            Ok(notice) => {
                self.invalidate(&notice.ids.map_or(Change::All, Change::Movies));
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                metrics::histogram!(INVALIDATION_LAG_METRIC).record((now - notice.at).max(0.0));
            }
            Err(error) => {
                log::warn!("cache: unreadable change notification ({error}); emptying the cache");
                self.invalidate(&Change::All);
            }
        }
    }
}

impl std::fmt::Debug for MovieCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MovieCache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Entries {
    /// Evicts least recently used entries, across both maps, until at most `max_bytes` are
    /// held.
    fn evict_to(&mut self, max_bytes: usize) {
        while self.movies.bytes + self.pages.bytes > max_bytes {
            let evicted = match (self.movies.oldest(), self.pages.oldest()) {
                (Some(movie), Some(page)) if movie < page => self.movies.pop_oldest(),
                (_, Some(_)) => self.pages.pop_oldest(),
                (Some(_), None) => self.movies.pop_oldest(),
                (None, None) => return,
            };
            self.evictions += u64::from(evicted);
        }
    }
}

/// What an entry is taken to occupy: its body, tag and key, and [`ENTRY_OVERHEAD`].
fn entry_size(value: &Rendered, key_bytes: usize) -> usize {
    value.body.len() + value.etag.len() + key_bytes + ENTRY_OVERHEAD
}

/// A map that knows which of its keys was used longest ago.
struct Lru<K> {
    entries: HashMap<K, (u64, Arc<Rendered>, usize)>,
    /// Last use → key.
    order: BTreeMap<u64, K>,
    bytes: usize,
}

impl<K> Default for Lru<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            bytes: 0,
        }
    }
}

impl<K: Eq + Hash + Clone> Lru<K> {
    fn get<Q>(&mut self, key: &Q, tick: u64) -> Option<Arc<Rendered>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let (used, value, _) = self.entries.get_mut(key)?;
        if let Some(key) = self.order.remove(used) {
            self.order.insert(tick, key);
        }
        *used = tick;
        Some(Arc::clone(value))
    }

    fn insert(&mut self, key: K, value: Arc<Rendered>, tick: u64, size: usize) {
        self.remove(&key);
        self.order.insert(tick, key.clone());
        self.entries.insert(key, (tick, value, size));
        self.bytes += size;
    }

    fn remove<Q>(&mut self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let Some((used, _, size)) = self.entries.remove(key) else {
            return false;
        };
        self.order.remove(&used);
        self.bytes -= size;
        true
    }

    fn oldest(&self) -> Option<u64> {
        self.order.keys().next().copied()
    }

    fn pop_oldest(&mut self) -> bool {
        match self.order.pop_first() {
            Some((_, key)) => {
                if let Some((_, _, size)) = self.entries.remove(&key) {
                    self.bytes -= size;
                }
                true
            }
            None => false,
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Starts the thread that keeps `cache` exact on PostgreSQL: it listens on a session of its
/// own, replaces the session when it fails or stalls, and empties the cache each time a new
/// one starts listening. The threads hold the cache weakly and end once it is dropped.
pub(crate) fn watch_postgres(
    cache: &MovieCache,
    url: DatabaseUrl,
    options: ConnectionOptions,
) -> std::io::Result<()> {
    let cache = Arc::downgrade(&cache.inner);
    thread::Builder::new()
        .name("myapi-cache-watch".into())
        .spawn(move || supervise(&cache, &url, &options))
        .map(drop)
}

/// The cache, while anyone else still holds it.
fn upgrade(cache: &Weak<Inner>) -> Option<MovieCache> {
    cache.upgrade().map(|inner| MovieCache { inner })
}

/// One listening session's state, shared with the supervisor.
#[derive(Default)]
struct Session {
    /// ms since the cache's start, plus one, when the session last came round its loop
    /// (while it connects: when its connect timeout ends).
    alive: AtomicU64,
    /// Set by the supervisor: the session must not touch the cache again.
    abandoned: AtomicBool,
    finished: AtomicBool,
}

fn supervise(cache: &Weak<Inner>, url: &DatabaseUrl, options: &ConnectionOptions) {
    let mut backoff = RECONNECT_BACKOFF.0;
    let mut was_down = false;
    while let Some(interval) = upgrade(cache).map(|cache| cache.heartbeat_interval()) {
        let session = Arc::new(Session::default());
        if let Some(cache) = upgrade(cache) {
            // Connecting may take the connect timeout; past it and the stall limit, the
            // session is taken for stuck like any other.
            let connecting = cache.now_ms() + ms(options.connect_timeout) + 1;
            session.alive.store(connecting, Ordering::Release);
        }
        let spawned = {
            let (session, cache, url, options) = (
                Arc::clone(&session),
                Weak::clone(cache),
                url.clone(),
                *options,
            );
            thread::Builder::new()
                .name("myapi-cache-listen".into())
                .spawn(move || {
                    let result = listen(&session, &cache, &url, &options);
                    if let Err(error) = result
                        && !session.abandoned.load(Ordering::Acquire)
                    {
                        log::warn!("cache: the change listener failed: {error}");
                    }
                    session.finished.store(true, Ordering::Release);
                })
        };
        if let Err(error) = spawned {
            log::error!("cache: cannot start the change listener: {error}");
            session.finished.store(true, Ordering::Release);
        }
        loop {
            thread::sleep(interval);
            let Some(cache) = upgrade(cache) else {
                session.abandoned.store(true, Ordering::Release);
                return;
            };
            if session.finished.load(Ordering::Acquire) {
                break;
            }
            let alive = session.alive.load(Ordering::Acquire);
            if cache.now_ms().saturating_sub(alive) > ms(STALL_LIMIT) {
                session.abandoned.store(true, Ordering::Release);
                log::warn!("cache: the change listener stalled; replacing its session");
                break;
            }
            if cache.heard_recently() {
                backoff = RECONNECT_BACKOFF.0;
                if was_down {
                    log::info!("cache: listening for changes again");
                    was_down = false;
                }
            }
        }
        if let Some(cache) = upgrade(cache) {
            cache.lose_watch();
        }
        was_down = true;
        thread::sleep(backoff);
        backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
    }
}

/// The triggers that tell the listener about every change (migration `movie_changes`).
const TRIGGERS: [&str; 5] = [
    "movies_changing",
    "movies_inserted",
    "movies_updated",
    "movies_deleted",
    "movies_truncated",
];

/// Connects, listens, checks the triggers, empties the cache, then applies notifications
/// and heartbeats until a connection fails, the supervisor abandons the session, or the
/// cache is dropped.
///
/// Heartbeats go out on a second session: one sent by the listening session itself would
/// hold PostgreSQL's notification commit lock for a moment, and a listener frozen in that
/// moment would stop every write's trigger. Each carries a random nonce, so no other
/// session can make a dead listener look alive.
fn listen(
    session: &Session,
    weak: &Weak<Inner>,
    url: &DatabaseUrl,
    options: &ConnectionOptions,
) -> Result<(), DbError> {
    let mut listener = Listener::connect(url, options, LISTENER_NAME)?;
    let mut sender = Listener::connect(url, options, HEARTBEAT_NAME)?;
    let missing = listener.missing_triggers("movies", &TRIGGERS)?;
    if !missing.is_empty() {
        return Err(DbError::Unavailable(format!(
            "the triggers {} on myapi.movies are missing or disabled, so changes would go \
             unheard; migrate the database (myapi-cli migrate)",
            missing.join(", ")
        )));
    }
    let nonce = u64::from_le_bytes(random_bytes::<8>());
    let heartbeat_channel = format!("myapi_heartbeat_{nonce:016x}");
    listener.listen(CHANNEL)?;
    listener.listen(&heartbeat_channel)?;
    let mut next_heartbeat = Instant::now();
    // Since when a heartbeat has been out with none back: a listener whose backend stopped
    // reading (frozen) still polls happily, so this is how it learns.
    let mut awaiting: Option<Instant> = None;
    let mut emptied = false;
    loop {
        if session.abandoned.load(Ordering::Acquire) {
            return Ok(());
        }
        let Some(cache) = upgrade(weak) else {
            return Ok(());
        };
        if !emptied {
            // Listening first, then emptying: a change committed in between is both
            // reflected in what later reads fetch and delivered here.
            cache.invalidate(&Change::All);
            emptied = true;
        }
        let now_ms = cache.now_ms();
        session.alive.store(now_ms + 1, Ordering::Release);
        let now = Instant::now();
        let fast = now + cache.heartbeat_interval();
        let heartbeat_due = now >= next_heartbeat || (cache.read_lately() && next_heartbeat > fast);
        if heartbeat_due {
            next_heartbeat = if cache.read_lately() {
                fast
            } else {
                now + IDLE_HEARTBEAT
            };
        }
        drop(cache); // never held across a round trip: a frozen backend must not keep it
        if heartbeat_due {
            sender.notify(&heartbeat_channel, &format!("{nonce:016x}:{now_ms}"))?;
            awaiting.get_or_insert(now);
        }
        if awaiting.is_some_and(|since| since.elapsed() > STALL_LIMIT) {
            return Err(DbError::Unavailable(format!(
                "no heartbeat came back for {} ms",
                STALL_LIMIT.as_millis()
            )));
        }
        for notification in listener.received()? {
            let Some(cache) = upgrade(weak) else {
                return Ok(());
            };
            if session.abandoned.load(Ordering::Acquire) {
                return Ok(());
            }
            if notification.channel == CHANNEL {
                cache.apply(&notification.payload);
            } else if let Some(sent) = notification
                .payload
                .strip_prefix(&format!("{nonce:016x}:"))
                .and_then(|sent| sent.parse::<u64>().ok())
                .filter(|sent| *sent <= cache.now_ms())
            {
                cache.heartbeat_back(sent);
                awaiting = None;
            }
        }
        thread::sleep(POLL_INTERVAL);
    }
}

impl MovieCache {
    /// Whether anyone looked anything up within [`IDLE_AFTER`].
    fn read_lately(&self) -> bool {
        match self.inner.last_lookup.load(Ordering::Relaxed) {
            0 => false,
            last => self.now_ms() < (last - 1).saturating_add(ms(IDLE_AFTER)),
        }
    }

    fn heartbeat_interval(&self) -> Duration {
        (self.inner.max_staleness / 5).max(Duration::from_millis(1))
    }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_bytes: usize) -> MovieCache {
        MovieCache {
            inner: Arc::new(Inner {
                enabled: true,
                max_bytes,
                max_staleness: Duration::from_millis(100),
                entries: Mutex::default(),
                watch: Watch::None,
                started: Instant::now(),
                last_lookup: AtomicU64::new(0),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                bypasses: AtomicU64::new(0),
            }),
        }
    }

    fn rendered(body: &str) -> Arc<Rendered> {
        Arc::new(Rendered {
            body: Bytes::copy_from_slice(body.as_bytes()),
            etag: "1".into(),
            weak_etag: false,
            next_after: None,
        })
    }

    /// With the first watch connection busy, a look-up reads the version on another, and
    /// a commit by a connection outside the cache still empties it before the next hit.
    #[test]
    fn every_sqlite_watch_connection_sees_a_commit_from_elsewhere() {
        use diesel::{Connection, RunQueryDsl, SqliteConnection};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watch.db");
        let settings = CacheSettings {
            enabled: true,
            max_bytes: NonZero::new(1 << 20).unwrap(),
            max_staleness_ms: NonZero::new(100).unwrap(),
        };
        let cache = MovieCache::new(&settings, &DatabaseUrl::Sqlite(path.clone())).unwrap();
        let Watch::DataVersion(watchers) = &cache.inner.watch else {
            panic!("a SQLite cache watches data_version");
        };
        if watchers.len() < 2 {
            // One core: there is no second connection to prove.
            return;
        }
        // Each connection reads the version once.
        let busy = watchers[0].lock().unwrap();
        cache.movie(7);
        drop(busy);
        cache.movie(7);
        cache.store_movie(cache.ticket(), 7, rendered("old"));
        assert_eq!(cache.movie(7).0, Lookup::Hit);

        let busy = watchers[0].lock().unwrap();
        assert_eq!(
            cache.movie(7).0,
            Lookup::Hit,
            "the second connection, nothing changed"
        );
        let mut writer = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        diesel::sql_query("CREATE TABLE elsewhere (x INTEGER)")
            .execute(&mut writer)
            .unwrap();
        assert_eq!(cache.movie(7), (Lookup::Miss, None));
        drop(busy);
    }

    #[test]
    fn a_store_after_an_invalidation_is_refused() {
        let cache = cache(1 << 20);
        let before = cache.ticket();
        cache.invalidate(&Change::Movies(vec![7]));
        cache.store_movie(before, 7, rendered("old"));
        assert_eq!(cache.movie(7), (Lookup::Miss, None));
        let after = cache.ticket();
        cache.store_movie(after, 7, rendered("new"));
        assert_eq!(cache.movie(7), (Lookup::Hit, Some(rendered("new"))));
    }

    #[test]
    fn a_change_drops_its_movies_and_every_page() {
        let cache = cache(1 << 20);
        cache.store_movie(cache.ticket(), 1, rendered("1"));
        cache.store_movie(cache.ticket(), 2, rendered("2"));
        cache.store_page(cache.ticket(), "q", rendered("[]"));
        cache.invalidate(&Change::Movies(vec![1]));
        assert_eq!(cache.movie(1).0, Lookup::Miss);
        assert_eq!(cache.movie(2).0, Lookup::Hit);
        assert_eq!(cache.page("q").0, Lookup::Miss);
        cache.invalidate(&Change::All);
        assert_eq!(cache.movie(2).0, Lookup::Miss);
        assert_eq!(cache.stats().bytes, 0);
    }

    #[test]
    fn the_least_recently_used_entry_goes_first_across_both_kinds() {
        let size = entry_size(&rendered("x"), 4);
        let cache = cache(3 * size);
        cache.store_movie(cache.ticket(), 1, rendered("x"));
        cache.store_page(cache.ticket(), "a", rendered("x"));
        cache.store_movie(cache.ticket(), 2, rendered("x"));
        assert_eq!(cache.movie(1).0, Lookup::Hit); // 1 is now newer than page "a"
        cache.store_page(cache.ticket(), "b", rendered("x"));
        assert_eq!(cache.page("a").0, Lookup::Miss);
        assert_eq!(cache.movie(1).0, Lookup::Hit);
        assert_eq!(cache.movie(2).0, Lookup::Hit);
        assert_eq!(cache.page("b").0, Lookup::Hit);
        let stats = cache.stats();
        assert_eq!((stats.evictions, stats.entries), (1, 3));
        assert!(stats.bytes <= 3 * size as u64);
    }

    #[test]
    fn an_entry_larger_than_the_cache_is_not_kept() {
        let cache = cache(100);
        cache.store_movie(cache.ticket(), 1, rendered(&"x".repeat(200)));
        assert_eq!(cache.movie(1).0, Lookup::Miss);
        assert_eq!(cache.stats().bytes, 0);
    }
}

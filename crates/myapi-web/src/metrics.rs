//! Prometheus metrics, served at `/metrics` on a listener of their own (`metrics.address`),
//! never on the API's.
//!
//! Names and labels follow the OpenTelemetry semantic conventions as Prometheus exports them
//! (`http.server.request.duration` → `http_server_request_duration_seconds`). Requests are
//! recorded by [`crate::middleware::observe`]; the pool's gauges and the `process_*` metrics
//! are read when Prometheus scrapes. Until [`install`] runs (metrics disabled, or in tests),
//! recording is skipped or a no-op.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::Method;
use actix_web::{HttpResponse, HttpServer, web};
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use myapi_services::auth::HashPool;
use myapi_services::config::ConfigError;
use myapi_services::limits::{LEASE_STATEMENTS_METRIC, LEASES_METRIC};
use myapi_services::mail;
use myapi_services::movies::cache::INVALIDATION_LAG_METRIC;
use myapi_services::{Database, Services, SettingsSource};
use serde::{Deserialize, Deserializer};

/// Histogram, seconds, labels `http_request_method`, `http_route`, `http_response_status_code`.
pub const REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// Gauge, label `http_request_method`: requests being served.
pub const ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// Counter, label `outcome`: `/token` answers by kind ([`crate::error::login_outcome`]).
pub const LOGIN_ATTEMPTS: &str = "myapi_login_attempts_total";
/// Counter, label `class` (`read`, `write`): requests refused with 429 by the request limits.
pub const RATE_LIMITED: &str = "myapi_rate_limited_total";
const POOL_CONNECTIONS: &str = "db_client_connection_count";
const POOL_MAX: &str = "db_client_connection_max";
/// Counter, label `result` (`hit`, `miss`, `bypass`): movie reads by what the cache did.
const CACHE_REQUESTS: &str = "myapi_cache_requests_total";
const CACHE_EVICTIONS: &str = "myapi_cache_evictions_total";
const CACHE_BYTES: &str = "myapi_cache_bytes";

/// OpenTelemetry's default buckets for `http.server.request.duration`, in seconds.
const HTTP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// OpenTelemetry's buckets for database client durations, in seconds (the pool wait).
const DB_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];
/// The cache's invalidation lag, in seconds: its bound (`cache.max_staleness_ms`, 0.1 by
/// default) in the middle.
const LAG_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// How often histogram samples are folded into their buckets when nobody scrapes (which
/// bounds their memory).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Set once the recorder is installed: until then the request path skips recording.
static RECORDING: AtomicBool = AtomicBool::new(false);

/// Whether metrics are being recorded (cheap: one relaxed load).
pub fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// The `metrics` section of the settings.
#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    /// Where `/metrics` is served (`127.0.0.1:9464`); `None` (an empty setting) serves none.
    #[serde(deserialize_with = "optional_address")]
    pub address: Option<SocketAddr>,
}

impl MetricsSettings {
    pub fn from_source(source: &SettingsSource) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Sections {
            metrics: MetricsSettings,
        }
        Ok(source.read::<Sections>()?.metrics)
    }
}

/// `""` → `None`; otherwise an `ip:port` (IPv6 in brackets). Host names are refused: the
/// listener's address must not depend on name resolution at start-up.
fn optional_address<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not an ip:port such as 127.0.0.1:9464 (empty disables metrics)"
        ))
    })
}

/// Why metrics could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(#[from] BuildError),
}

/// Installs the process-wide recorder (once per process), describes every metric, and
/// starts the thread that keeps histograms drained between scrapes.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&HTTP_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(Database::WAIT_TIME_METRIC.into()),
            &DB_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(INVALIDATION_LAG_METRIC.into()), &LAG_BUCKETS)?
        .install_recorder()?;
    describe();
    process::describe();
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("myapi-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        log::warn!("cannot start the metrics upkeep thread: {error}");
    }
    RECORDING.store(true, Ordering::Relaxed);
    Ok(handle)
}

fn describe() {
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Duration of HTTP server requests, until the response head is ready."
    );
    describe_gauge!(
        ACTIVE_REQUESTS,
        Unit::Count,
        "Number of HTTP server requests being served."
    );
    describe_counter!(
        LOGIN_ATTEMPTS,
        Unit::Count,
        "POST /token answers, by outcome."
    );
    describe_counter!(
        RATE_LIMITED,
        Unit::Count,
        "Requests refused with 429 by the request limits, by class."
    );
    describe_counter!(
        LEASES_METRIC,
        Unit::Count,
        "Leases of request limits asked of the shared store, by class and result."
    );
    describe_counter!(
        LEASE_STATEMENTS_METRIC,
        Unit::Count,
        "Statements that took leases of request limits from the shared store (several leases each)."
    );
    describe_gauge!(
        HashPool::QUEUE_DEPTH_METRIC,
        Unit::Count,
        "Logins waiting for a hashing thread or holding one."
    );
    describe_gauge!(
        POOL_CONNECTIONS,
        Unit::Count,
        "Database connections in the pool, by state (idle, used)."
    );
    describe_gauge!(
        POOL_MAX,
        Unit::Count,
        "The most database connections the pool opens."
    );
    describe_histogram!(
        Database::WAIT_TIME_METRIC,
        Unit::Seconds,
        "Time taken to check a connection out of the pool."
    );
    describe_counter!(
        CACHE_REQUESTS,
        Unit::Count,
        "Movie reads by what the read cache did: hit, miss, or bypass (off, or not trusted now)."
    );
    describe_counter!(
        CACHE_EVICTIONS,
        Unit::Count,
        "Read cache entries dropped to stay within cache.max_bytes."
    );
    describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "What the read cache's entries hold, bodies and bookkeeping."
    );
    describe_histogram!(
        INVALIDATION_LAG_METRIC,
        Unit::Seconds,
        "From a change to the movies (its trigger's clock_timestamp()) to this instance dropping what it changed."
    );
    describe_counter!(
        mail::SENT_METRIC,
        Unit::Count,
        "Attempts at sending mail from the outbox, by result: sent, retry, failed (given up)."
    );
    describe_gauge!(
        mail::PENDING_METRIC,
        Unit::Count,
        "Mails in the outbox not yet sent or given up, fleet-wide."
    );
}

/// The method as a label: the standard methods by name, anything else `_OTHER`, so a
/// client cannot create label values.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// Counts one `/token` answer.
pub fn count_login(outcome: &'static str) {
    counter!(LOGIN_ATTEMPTS, "outcome" => outcome).increment(1);
}

/// Serves `GET /metrics` on `listener` with one worker: the pool's and the process's
/// gauges are refreshed, then everything is rendered. Signals are left to the API server,
/// which stops this one when it has stopped ([`crate::Application::run_until_stopped`]).
pub fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    services: Services,
) -> std::io::Result<Server> {
    let scrape = web::Data::new(Scrape { handle, services });
    let server = HttpServer::new(move || {
        actix_web::App::new()
            .app_data(scrape.clone())
            .route("/metrics", web::get().to(render))
    })
    .workers(1)
    // A connection per scrape: an idle kept-alive one would hold up the stop by the
    // shutdown timeout, and scrapes are seconds apart.
    .keep_alive(actix_web::http::KeepAlive::Disabled)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok(server)
}

struct Scrape {
    handle: PrometheusHandle,
    services: Services,
}

async fn render(scrape: web::Data<Scrape>) -> HttpResponse {
    let pool = scrape.services.database.pool_state();
    gauge!(POOL_CONNECTIONS, "state" => "idle").set(pool.idle);
    gauge!(POOL_CONNECTIONS, "state" => "used").set(pool.used);
    gauge!(POOL_MAX).set(pool.max);
    let cache = scrape.services.movies.cache().stats();
    for (result, count) in [
        ("hit", cache.hits),
        ("miss", cache.misses),
        ("bypass", cache.bypasses),
    ] {
        counter!(CACHE_REQUESTS, "result" => result).absolute(count);
    }
    counter!(CACHE_EVICTIONS).absolute(cache.evictions);
    gauge!(CACHE_BYTES).set(cache.bytes as f64);
    process::record();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(scrape.handle.render())
}

/// The standard `process_*` metrics, read from Linux's `/proc/self` at each scrape (a few
/// small reads). Elsewhere they are absent.
mod process {
    use std::sync::OnceLock;

    use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

    /// Linux reports CPU times in clock ticks of `USER_HZ`, fixed at 100 on every
    /// architecture's user ABI.
    const TICKS_PER_SECOND: f64 = 100.0;

    pub(super) fn describe() {
        describe_counter!(
            "process_cpu_seconds_total",
            Unit::Seconds,
            "User and system CPU time spent, in whole seconds."
        );
        describe_gauge!(
            "process_resident_memory_bytes",
            Unit::Bytes,
            "Resident memory size."
        );
        describe_gauge!(
            "process_virtual_memory_bytes",
            Unit::Bytes,
            "Virtual memory size."
        );
        describe_gauge!("process_open_fds", Unit::Count, "Open file descriptors.");
        describe_gauge!(
            "process_max_fds",
            Unit::Count,
            "Limit on open file descriptors."
        );
        describe_gauge!("process_threads", Unit::Count, "OS threads.");
        describe_gauge!(
            "process_start_time_seconds",
            Unit::Seconds,
            "Start time since the Unix epoch."
        );
    }

    /// Records what can be read; a file that cannot be read leaves its metrics as they were.
    pub(super) fn record() {
        if let Some(stat) = Stat::read() {
            // The exporter's counters are integers: whole seconds (rates over minutes, as
            // Prometheus computes them, are barely affected).
            counter!("process_cpu_seconds_total")
                .absolute(((stat.utime + stat.stime) as f64 / TICKS_PER_SECOND) as u64);
            gauge!("process_virtual_memory_bytes").set(stat.vsize as f64);
            gauge!("process_threads").set(stat.threads as f64);
            if let Some(start) = start_time(stat.starttime) {
                gauge!("process_start_time_seconds").set(start);
            }
        }
        if let Some(rss) = status_kib("VmRSS:") {
            gauge!("process_resident_memory_bytes").set(rss as f64 * 1024.0);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            // One of them is the directory being read.
            gauge!("process_open_fds").set(fds.count().saturating_sub(1) as f64);
        }
        if let Some(max) = max_open_files() {
            gauge!("process_max_fds").set(max as f64);
        }
    }

    /// The fields of `/proc/self/stat` used here.
    struct Stat {
        utime: u64,
        stime: u64,
        threads: u64,
        starttime: u64,
        vsize: u64,
    }

    impl Stat {
        fn read() -> Option<Self> {
            let text = std::fs::read_to_string("/proc/self/stat").ok()?;
            // The command name (field 2) is parenthesised and may hold spaces: count
            // fields from after its closing parenthesis, where field 3 starts.
            let rest = &text[text.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
            Some(Self {
                utime: field(14)?,
                stime: field(15)?,
                threads: field(20)?,
                starttime: field(22)?,
                vsize: field(23)?,
            })
        }
    }

    /// Seconds since the epoch at which the process started: the boot time plus its start
    /// in ticks since boot (read once; neither changes).
    fn start_time(starttime_ticks: u64) -> Option<f64> {
        static START: OnceLock<Option<f64>> = OnceLock::new();
        *START.get_or_init(|| {
            let stat = std::fs::read_to_string("/proc/stat").ok()?;
            let boot = stat
                .lines()
                .find_map(|line| line.strip_prefix("btime "))?
                .trim()
                .parse::<u64>()
                .ok()?;
            Some(boot as f64 + starttime_ticks as f64 / TICKS_PER_SECOND)
        })
    }

    /// A `kB` value of `/proc/self/status`, such as `VmRSS:`.
    fn status_kib(key: &str) -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|line| line.strip_prefix(key))?;
        line.split_whitespace().next()?.parse().ok()
    }

    /// The soft limit on open files, from `/proc/self/limits`.
    fn max_open_files() -> Option<u64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits
            .lines()
            .find_map(|line| line.strip_prefix("Max open files"))?;
        line.split_whitespace().next()?.parse().ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        #[cfg(target_os = "linux")]
        fn proc_self_is_read() {
            let stat = Stat::read().unwrap();
            assert!(stat.threads >= 1 && stat.vsize > 0);
            assert!(start_time(stat.starttime).unwrap() > 1.0e9);
            assert!(status_kib("VmRSS:").unwrap() > 0);
            assert!(max_open_files().unwrap() > 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_standard_methods_are_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let custom = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&custom), "_OTHER");
        let lowercase = Method::from_bytes(b"get").unwrap();
        assert_eq!(method_label(&lowercase), "_OTHER");
    }

    #[test]
    fn the_address_is_empty_or_an_ip_and_port() {
        let read = |value: &str| {
            serde_json::from_value::<MetricsSettings>(serde_json::json!({ "address": value }))
                .map(|settings| settings.address)
                .map_err(|error| error.to_string())
        };
        assert_eq!(read(""), Ok(None));
        assert_eq!(read(" "), Ok(None));
        assert_eq!(
            read("127.0.0.1:9464"),
            Ok(Some("127.0.0.1:9464".parse().unwrap()))
        );
        assert_eq!(read("[::1]:9464"), Ok(Some("[::1]:9464".parse().unwrap())));
        for bad in ["9464", "localhost:9464", "127.0.0.1", "127.0.0.1:99999"] {
            assert!(
                read(bad).unwrap_err().contains("is not an ip:port"),
                "{bad}"
            );
        }
    }
}

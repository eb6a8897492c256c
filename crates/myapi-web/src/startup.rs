//! Start-up, split from `main` so tests can run the real server on a free port.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::task::Poll;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::{Condition, DefaultHeaders, ErrorHandlers, from_fn};
use actix_web::web::ThinData;
use actix_web::{App, HttpResponse, HttpServer, web};
use myapi_services::auth::TokenKeys;
use myapi_services::config::{ConfigError, Threads, comma_list};
use myapi_services::{ServiceError, Services, Settings, SettingsSource};
use serde::{Deserialize, Deserializer};
use url::Url;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::client::{ClientIpHeader, TrustedProxies};
use crate::lifecycle::{self, StopSignals, StopTimes, Stopping};
use crate::metrics::{self, MetricsError, MetricsSettings};
use crate::middleware::{
    HeaderLimit, docs_security_policy, finish_errors, limit_header_size, observe,
};
use crate::openapi::ApiDoc;
use crate::rate_limit::{self, PolicyFields, limit_requests};
use crate::routes;

/// The `server` section of the settings (defaults in `config/default.toml`).
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    pub workers: Threads,
    /// Per worker, for database work; 0 = `database.pool_size / workers`, rounded up
    /// ([`blocking_threads`]).
    pub blocking_threads: usize,
    /// Per worker.
    pub max_connections: usize,
    pub keep_alive_secs: u64,
    /// Time a client has to send its request head.
    pub client_request_timeout_ms: u64,
    /// After SIGTERM, time `/ready` answers 503 while requests are still served
    /// ([`crate::lifecycle`]).
    pub drain_secs: u64,
    /// Time in-flight requests get to finish once the server stops accepting.
    pub shutdown_timeout_secs: u64,
    /// `/token` has its own, smaller cap.
    pub max_body_bytes: usize,
    /// Total of header names and values.
    pub max_header_bytes: usize,
    /// Exact origins (`https://app.example:8443`); empty turns CORS off. In the
    /// environment: a comma-separated list.
    #[serde(deserialize_with = "allowed_origins")]
    pub cors_allowed_origins: Vec<String>,
    /// Reverse proxies whose `client_ip_header` names the client. In the environment: a
    /// comma-separated list.
    pub trusted_proxies: TrustedProxies,
    /// The one forwarding header read from `trusted_proxies`.
    pub client_ip_header: ClientIpHeader,
}

impl ServerSettings {
    pub fn from_source(source: &SettingsSource) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Sections {
            server: ServerSettings,
        }
        Ok(source.read::<Sections>()?.server)
    }
}

/// Deserialises `server.cors_allowed_origins`. Each entry must be an origin exactly as
/// browsers send it in `Origin`, because that header is compared byte for byte.
fn allowed_origins<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let origins = comma_list(deserializer)?;
    for origin in &origins {
        check_origin(origin).map_err(serde::de::Error::custom)?;
    }
    Ok(origins)
}

fn check_origin(entry: &str) -> Result<(), String> {
    let origin = Url::parse(entry)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .map(|url| url.origin().ascii_serialization());
    match origin {
        Some(origin) if origin == entry => Ok(()),
        Some(origin) => Err(format!(
            "`{entry}` is not an exact origin (scheme://host[:port]; did you mean `{origin}`?)"
        )),
        None => Err(format!(
            "`{entry}` is not an http(s) origin (scheme://host[:port], such as https://app.example)"
        )),
    }
}

/// Why the server could not start; `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", myapi_services::error_chain(.0))]
    Services(#[from] ServiceError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Finished,
    /// A blocking task was given up on and still runs: dropping the runtime would wait for
    /// it, so the process should exit without dropping it.
    LeftBlockingWork,
}

/// Longest the stop waits for the last audit write.
const FLUSH_LIMIT: Duration = Duration::from_secs(3);

/// A server bound to its port, with its services built, ready to run.
pub struct Application {
    port: u16,
    services: Services,
    server: Server,
    metrics: Option<MetricsServer>,
    stopping: Stopping,
    stop_times: StopTimes,
}

/// The `/metrics` listener, when enabled.
struct MetricsServer {
    address: SocketAddr,
    server: Server,
}

impl Application {
    /// [`Self::build_with_metrics`] without a metrics listener.
    pub fn build(server: &ServerSettings, settings: &Settings) -> Result<Self, StartupError> {
        Self::build_with_metrics(server, settings, &MetricsSettings { address: None })
    }

    /// Binds the listeners, installs the metrics recorder (once per process: metrics are
    /// process-wide), opens the pool, migrates (unless disabled) and builds the servers.
    /// Blocking; call before entering the async runtime, or from a blocking context.
    pub fn build_with_metrics(
        server: &ServerSettings,
        settings: &Settings,
        metrics_settings: &MetricsSettings,
    ) -> Result<Self, StartupError> {
        let address = format!("{}:{}", server.host, server.port);
        let bind_error = |source| StartupError::Bind {
            address: address.clone(),
            source,
        };
        let listener = TcpListener::bind(&address).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let metrics_listener = metrics_settings
            .address
            .map(|address| {
                let bind_error = |source| StartupError::Bind {
                    address: address.to_string(),
                    source,
                };
                let listener = TcpListener::bind(address).map_err(bind_error)?;
                let bound = listener.local_addr().map_err(bind_error)?;
                Ok::<_, StartupError>((listener, bound))
            })
            .transpose()?;
        let recorder = metrics_listener
            .as_ref()
            .map(|_| metrics::install())
            .transpose()?;
        let with_random_key;
        let settings = match &settings.token_key {
            None => {
                let keys = TokenKeys::random();
                log::warn!(
                    "none of MYAPI_TOKEN_KEY_FILES, MYAPI_TOKEN_KEY and MYAPI_TOKEN_KEYS is \
                     set: signing with a random per-process Ed25519 key, kid {}; tokens will \
                     not survive a restart nor work on another instance",
                    keys.signing().0
                );
                with_random_key = Settings {
                    token_key: Some(keys),
                    ..settings.clone()
                };
                &with_random_key
            }
            Some(keys) => {
                log::info!(
                    "token keys: signing with kid {} ({:?}); accepting kids {}",
                    keys.signing().0,
                    keys.signing().1.algorithm(),
                    keys.iter()
                        .map(|(kid, _)| kid)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                settings
            }
        };
        let services = Services::build(settings, settings.database.run_migrations)?;
        log::info!(
            "database: {} ({})",
            services.database.backend_name(),
            services.database.display_url()
        );
        services.movies.watch_changes()?;
        services
            .mail
            .start_sender()
            .map_err(|e| ServiceError::internal("cannot start the mail sender", e.to_string()))?;
        services.limits.start_refills().map_err(|e| {
            ServiceError::internal("cannot start the rate limit refills", e.to_string())
        })?;
        let metrics = match (metrics_listener, recorder) {
            (Some((listener, address)), Some(recorder)) => {
                let server =
                    metrics::serve(listener, recorder, services.clone()).map_err(|source| {
                        StartupError::Bind {
                            address: address.to_string(),
                            source,
                        }
                    })?;
                Some(MetricsServer { address, server })
            }
            _ => None,
        };
        let stopping = Stopping::default();
        let http = run(listener, services.clone(), stopping.clone(), server).map_err(bind_error)?;
        if !server.trusted_proxies.is_empty() {
            log::info!(
                "trusted proxies: {} (their {} names the client)",
                server.trusted_proxies,
                server.client_ip_header
            );
        }
        if let Some(metrics) = &metrics {
            log::info!("metrics on http://{}/metrics", metrics.address);
        }
        log::info!("listening on http://{}:{port}", server.host);
        Ok(Self {
            port,
            services,
            server: http,
            metrics,
            stopping,
            stop_times: StopTimes {
                drain: Duration::from_secs(server.drain_secs),
                shutdown_timeout: Duration::from_secs(server.shutdown_timeout_secs),
            },
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The services this server answers with (tests reach its hooks through them).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The metrics listener's address, when enabled (useful with port 0).
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|metrics| metrics.address)
    }

    /// Serves until SIGTERM or SIGINT, then drains, stops and returns, as
    /// [`crate::lifecycle`] describes. `signals` must have been installed before the
    /// listener was bound ([`Self::build_with_metrics`]).
    pub async fn run_until_signalled(self, signals: StopSignals) -> std::io::Result<Stopped> {
        let handle = self.server.handle();
        let (stopping, times) = (self.stopping.clone(), self.stop_times);
        actix_web::rt::spawn(async move {
            let signals = lifecycle::wait_for_stop(signals, &stopping, times).await;
            // Sends the command now; the server acts on it while it is polled below.
            drop(handle.stop(true));
            lifecycle::exit_on_next_signal(signals).await;
        });
        lifecycle::tell_service_manager(sd_notify::NotifyState::Ready);
        self.run_until_stopped().await
    }

    /// Serves until the API server is stopped (by [`Self::run_until_signalled`]; in tests,
    /// never: they drop it). The metrics listener serves alongside and stops after the API
    /// has stopped, so the last requests can still be scraped during the drain.
    pub async fn run_until_stopped(self) -> std::io::Result<Stopped> {
        let services = self.services.clone();
        let served = Self::serve(self.server, self.metrics).await;
        // Counts of throttled answers wait in memory for their minute to end: write them now,
        // or a stop would lose them; but not for longer than FLUSH_LIMIT, since a database
        // that stopped answering (frozen, or gone without closing its connections) would
        // hold the stop with it.
        let flush = actix_web::rt::task::spawn_blocking(move || services.audit.flush_throttled());
        let mut stopped = Stopped::Finished;
        match actix_web::rt::time::timeout(FLUSH_LIMIT, flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => log::warn!(
                "audit: throttled answers of the last minute not written: {}",
                myapi_services::error_chain(&error)
            ),
            Ok(Err(error)) => {
                log::warn!("audit: the last write of throttled answers failed: {error}")
            }
            Err(_) => {
                log::warn!(
                    "audit: the last write of throttled answers did not finish within {} s; \
                     stopping without it",
                    FLUSH_LIMIT.as_secs()
                );
                stopped = Stopped::LeftBlockingWork;
            }
        }
        served.map(|()| stopped)
    }

    /// Serves the API, and the metrics listener alongside it, until the API stops.
    async fn serve(server: Server, metrics: Option<MetricsServer>) -> std::io::Result<()> {
        let Some(metrics) = metrics else {
            return server.await;
        };
        let stop = metrics.server.handle();
        let mut api = std::pin::pin!(server);
        let mut scraper = std::pin::pin!(metrics.server);
        let mut scraper_done = false;
        let served = std::future::poll_fn(|cx| {
            if !scraper_done && let Poll::Ready(result) = scraper.as_mut().poll(cx) {
                scraper_done = true;
                if let Err(error) = result {
                    log::error!("metrics listener failed: {error}");
                }
            }
            api.as_mut().poll(cx)
        })
        .await;
        if !scraper_done {
            // Sends the command now; the server acts on it while it is polled below.
            drop(stop.stop(true));
            if let Err(error) = scraper.await {
                log::error!("metrics listener failed: {error}");
            }
        }
        served
    }
}

/// Creates the HTTP server over `listener`. `services` (and so the pool) is created once,
/// outside the per-worker factory, and shared by every worker.
pub fn run(
    listener: TcpListener,
    services: Services,
    stopping: Stopping,
    settings: &ServerSettings,
) -> std::io::Result<Server> {
    let blocking = blocking_threads(
        settings.blocking_threads,
        settings.workers.get(),
        services.database.pool_state().max,
    );
    let rate_limit_fields = PolicyFields::new(&services.limits);
    let services = web::Data::new(services);
    let server_settings = settings.clone();
    let server = HttpServer::new(move || {
        let (app, mut api) = App::new()
            .into_utoipa_app()
            .openapi(ApiDoc::openapi())
            .configure(routes::configure)
            .split_for_parts();
        rate_limit::document(&mut api);
        app.app_data(services.clone())
            .app_data(ThinData(stopping.clone()))
            .app_data(web::PayloadConfig::new(server_settings.max_body_bytes))
            .app_data(HeaderLimit(server_settings.max_header_bytes))
            .app_data(server_settings.trusted_proxies.clone())
            .app_data(server_settings.client_ip_header)
            .app_data(rate_limit_fields.clone())
            .service(web::resource("/docs").route(web::get().to(redirect_to_docs)))
            .default_service(routes::unrouted(&api))
            .service(
                SwaggerUi::new("/docs/{_:.*}")
                    .url("/openapi.json", api)
                    // Its badge would load an image from swagger.io naming this server's
                    // document, which the CSP refuses anyway.
                    .config(Config::default().validator_url("none")),
            )
            .wrap(from_fn(limit_requests))
            .wrap(from_fn(docs_security_policy))
            .wrap(from_fn(limit_header_size))
            .wrap(ErrorHandlers::new().default_handler(finish_errors))
            .wrap(Condition::new(
                !server_settings.cors_allowed_origins.is_empty(),
                cors(&server_settings.cors_allowed_origins),
            ))
            .wrap(
                DefaultHeaders::new()
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::REFERRER_POLICY, "no-referrer"))
                    .add((header::X_FRAME_OPTIONS, "DENY"))
                    .add((header::CACHE_CONTROL, "no-store")),
            )
            .wrap(from_fn(observe))
            .wrap(from_fn(lifecycle::close_when_stopping))
    })
    .max_connections(settings.max_connections)
    .keep_alive(Duration::from_secs(settings.keep_alive_secs))
    .client_request_timeout(Duration::from_millis(settings.client_request_timeout_ms))
    .client_disconnect_timeout(Duration::from_secs(1))
    .shutdown_timeout(settings.shutdown_timeout_secs)
    // Signals are caught before the listener is bound ([`crate::lifecycle`]).
    .disable_signals()
    .workers(settings.workers.get())
    .worker_max_blocking_threads(blocking);
    Ok(server.listen(listener)?.run())
}

/// Blocking threads per worker: `configured`, or for 0 enough that every pooled connection
/// can be in use at once (`pool_size / workers`, rounded up, at least 1).
///
/// A database call holds its blocking thread while it waits on the round trip, so with
/// fewer threads than connections the pool sits partly idle and requests queue for a
/// thread instead. More threads than connections would only wait for the pool; hashing
/// has its own threads.
fn blocking_threads(configured: usize, workers: usize, pool_size: u32) -> usize {
    if configured > 0 {
        return configured;
    }
    let pool_size = usize::try_from(pool_size).unwrap_or(usize::MAX);
    pool_size.div_ceil(workers.max(1)).max(1)
}

/// CORS for the configured origins only; credentials are bearer tokens, not cookies.
/// Browsers may send the conditional-request headers and read `ETag`, `Location` (a
/// created movie) and `Link` (the next page).
fn cors(origins: &[String]) -> Cors {
    origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
        ])
        .expose_headers([header::ETAG, header::LOCATION, header::LINK])
        .max_age(600)
}

async fn redirect_to_docs() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_threads_cover_the_pool_unless_set() {
        assert_eq!(blocking_threads(3, 2, 10), 3);
        assert_eq!(blocking_threads(0, 2, 10), 5);
        assert_eq!(blocking_threads(0, 3, 10), 4);
        assert_eq!(blocking_threads(0, 16, 10), 1);
        assert_eq!(blocking_threads(0, 0, 10), 10);
    }

    #[test]
    fn cors_entries_must_be_exact_origins() {
        for good in [
            "https://app.example",
            "http://localhost:3000",
            "https://[2001:db8::1]:8443",
        ] {
            assert_eq!(check_origin(good), Ok(()), "{good}");
        }
        for bad in [
            "*",
            "null",
            "app.example",
            "https://app.example/",
            "https://app.example/path",
            "https://app.example?x=1",
            "https://app.example#top",
            "https://user@app.example",
            "https://App.Example",
            "https://app.example:443",
            "ftp://app.example",
            "file:///etc",
            "",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }
}

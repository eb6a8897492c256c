//! Start-up, split from `main` so tests can run the real server on a free port.

use std::net::TcpListener;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::{StatusCode, header};
use actix_web::middleware::{Condition, DefaultHeaders, ErrorHandlers, Logger, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use myapi_services::{ServiceError, Services, Settings};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::middleware::{HeaderLimit, assign_request_id, finish_errors, limit_header_size};
use crate::openapi::ApiDoc;
use crate::routes;

/// Access-log line: client, request line, status, bytes, seconds, request id.
/// Never headers or bodies, so no token or password reaches the log.
const ACCESS_LOG_FORMAT: &str = r#"%a "%r" %s %b %Ts id=%{x-request-id}o"#;

/// Why the server could not start; `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// `host:port` as configured.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database or a service could not be set up.
    #[error(transparent)]
    Services(#[from] ServiceError),
}

/// A server bound to its port, with its services built, ready to run.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds the listener, opens the pool, migrates (unless disabled) and builds the server.
    /// Blocking; call before entering the async runtime, or from a blocking context.
    pub fn build(settings: &Settings) -> Result<Self, StartupError> {
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener =
            TcpListener::bind(&address).map_err(|source| StartupError::Bind { address, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                address: format!("{}:{}", settings.server.host, settings.server.port),
                source,
            })?
            .port();
        if settings.token_key.is_none() {
            log::warn!(
                "MYAPI_TOKEN_KEY is not set: using a random key; tokens will not survive a restart"
            );
        }
        let services = Services::build(settings, settings.database.run_migrations)?;
        log::info!(
            "database: {} ({})",
            services.database.backend_name(),
            services.database.display_url()
        );
        let server = run(listener, services, settings).map_err(|source| StartupError::Bind {
            address: format!("{}:{port}", settings.server.host),
            source,
        })?;
        log::info!("listening on http://{}:{port}", settings.server.host);
        Ok(Self { port, server })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, then finishes in-flight requests and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Creates the HTTP server over `listener`. `services` (and so the pool) is created once,
/// outside the per-worker factory, and shared by every worker.
pub fn run(
    listener: TcpListener,
    services: Services,
    settings: &Settings,
) -> std::io::Result<Server> {
    let services = web::Data::new(services);
    let openapi = ApiDoc::openapi();
    let server_settings = settings.server.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(services.clone())
            .app_data(web::PayloadConfig::new(server_settings.max_body_bytes))
            .app_data(HeaderLimit(server_settings.max_header_bytes))
            .configure(routes::configure)
            .service(web::resource("/docs").route(web::get().to(redirect_to_docs)))
            .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi.clone()))
            .default_service(web::to(not_found))
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
            .wrap(from_fn(assign_request_id))
            .wrap(Logger::new(ACCESS_LOG_FORMAT))
    })
    .max_connections(settings.server.max_connections)
    .keep_alive(Duration::from_secs(settings.server.keep_alive_secs))
    .client_request_timeout(Duration::from_millis(
        settings.server.client_request_timeout_ms,
    ))
    .client_disconnect_timeout(Duration::from_secs(1))
    .shutdown_timeout(settings.server.shutdown_timeout_secs);
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    // Few blocking threads beat many: more than the cores only adds context switches (the
    // pool bounds database concurrency anyway, and hashing has its own threads).
    let blocking_threads = match settings.server.blocking_threads {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    };
    server = server.worker_max_blocking_threads(blocking_threads);
    Ok(server.listen(listener)?.run())
}

/// CORS for the configured origins only; credentials are bearer tokens, not cookies.
fn cors(origins: &[String]) -> Cors {
    origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods(["GET", "POST"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .max_age(600)
}

async fn redirect_to_docs() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

async fn not_found() -> HttpResponse {
    HttpResponse::build(StatusCode::NOT_FOUND).finish()
}

//! `JWKS_URL=http://127.0.0.1:8000/.well-known/jwks.json cargo run -p resource-server`, then
//! `curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9000/whoami`.
//!
//! Environment: `JWKS_URL` (required), `ISSUER` (default `http://127.0.0.1:8000`) and
//! `AUDIENCE` (default `myapi`), which are myapi's defaults, and `BIND` (default
//! `127.0.0.1:9000`). `RUST_LOG` as env_logger reads it (default `info`).
//!
//! SIGINT and SIGTERM end the process at once: with nothing to save and only reads to
//! answer, there is nothing for a graceful stop to finish.

use std::net::TcpListener;
use std::process::ExitCode;

use resource_server::Config;

#[actix_web::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let Ok(jwks_url) = std::env::var("JWKS_URL") else {
        eprintln!(
            "resource-server: set JWKS_URL, e.g. http://127.0.0.1:8000/.well-known/jwks.json"
        );
        return ExitCode::from(2);
    };
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let config = Config::new(
        jwks_url,
        var("AUDIENCE", "myapi"),
        var("ISSUER", "http://127.0.0.1:8000"),
    );
    let bind = var("BIND", "127.0.0.1:9000");
    let listener = match TcpListener::bind(&bind) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("resource-server: cannot listen on {bind}: {error}");
            return ExitCode::from(2);
        }
    };
    let server = match resource_server::run(listener, config).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("resource-server: {error}");
            return ExitCode::from(2);
        }
    };
    log::info!("listening on http://{bind}/whoami");
    match server.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("resource-server: {error}");
            ExitCode::FAILURE
        }
    }
}

//! `myapi-web`: the HTTP server. Configuration → logging → pool → migrations → serve.

use std::process::ExitCode;

use myapi_services::SettingsSource;
use myapi_web::{Application, ServerSettings};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = SettingsSource::load()
        .and_then(|source| Ok((ServerSettings::from_source(&source)?, source.services()?)));
    let (server, settings) = match settings {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("myapi-web: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let app = match Application::build(&server, &settings) {
        Ok(app) => app,
        Err(error) => {
            eprintln!("myapi-web: {error}");
            return ExitCode::FAILURE;
        }
    };
    match actix_web::rt::System::new().block_on(app.run_until_stopped()) {
        Ok(()) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("myapi-web: {error}");
            ExitCode::FAILURE
        }
    }
}

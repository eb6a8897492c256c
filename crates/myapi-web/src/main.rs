//! `myapi-web`: the HTTP server. Configuration → logging → pool → migrations → serve.

use std::process::ExitCode;

use myapi_services::Settings;
use myapi_web::Application;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("myapi-web: {error}");
            return ExitCode::from(2);
        }
    };
    let app = match Application::build(&settings) {
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

//! `myapi-web`: the HTTP server. Configuration → logging → metrics → pool → migrations →
//! serve.

use std::process::ExitCode;

use myapi_services::SettingsSource;
use myapi_web::lifecycle::StopSignals;
use myapi_web::{Application, LogSettings, MetricsSettings, ServerSettings, Stopped, logging};

fn main() -> ExitCode {
    let settings = SettingsSource::load().and_then(|source| {
        let log = LogSettings::from_source(&source)?;
        let metrics = MetricsSettings::from_source(&source)?;
        Ok((
            log,
            ServerSettings::from_source(&source)?,
            metrics,
            source.services()?,
            source.exposed_dotenv().cloned(),
        ))
    });
    let (log, server, metrics, settings, exposed_dotenv) = match settings {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("myapi-web: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    logging::init(log.format);
    if let Some(exposed) = exposed_dotenv {
        log::warn!("{exposed}");
    }
    let system = actix_web::rt::System::new();
    // Before anything is bound, so that no signal meets the default action from here on.
    let signals = match system.block_on(async { StopSignals::install() }) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("myapi-web: cannot catch stop signals: {error}");
            return ExitCode::FAILURE;
        }
    };
    let app = match Application::build_with_metrics(&server, &settings, &metrics) {
        Ok(app) => app,
        Err(error) => {
            eprintln!("myapi-web: {error}");
            return ExitCode::FAILURE;
        }
    };
    match system.block_on(app.run_until_signalled(signals)) {
        Ok(Stopped::Finished) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Ok(Stopped::LeftBlockingWork) => {
            log::info!("stopped");
            // Dropping the runtime would wait for the work the stop gave up on.
            log::logger().flush();
            std::process::exit(0)
        }
        Err(error) => {
            eprintln!("myapi-web: {error}");
            ExitCode::FAILURE
        }
    }
}

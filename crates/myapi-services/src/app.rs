//! Every service of the tier, built together at start-up.

use crate::audit::AuditService;
use crate::auth::AuthService;
use crate::hooks::Hooks;
use crate::idempotency::IdempotencyService;
use crate::limits::RateLimiter;
use crate::mail::MailService;
use crate::movies::MovieService;
use crate::{Database, ServiceError, Settings};

/// Every service, built once at start-up and shared (cheap to clone).
#[derive(Clone)]
pub struct Services {
    pub database: Database,
    pub auth: AuthService,
    pub movies: MovieService,
    pub audit: AuditService,
    pub idempotency: IdempotencyService,
    /// Request limits of every route outside login.
    pub limits: RateLimiter,
    /// The mail outbox; the server starts its sender ([`MailService::start_sender`]).
    pub mail: MailService,
    // [xtask] service fields
    /// Where tests pause a service (see [`crate::hooks`]); inert in a release build.
    pub hooks: Hooks,
}

impl Services {
    /// Connects the pool, applies migrations when `run_migrations` is set, and builds each
    /// service (blocking).
    pub fn build(settings: &Settings, run_migrations: bool) -> Result<Self, ServiceError> {
        let database = Database::connect(&settings.database)?;
        if run_migrations {
            let applied = database.migrate()?;
            if !applied.is_empty() {
                log::info!("applied migrations: {}", applied.join(", "));
            }
        }
        let hooks = Hooks::default();
        let mail = MailService::new(database.clone(), &settings.mail)?;
        Ok(Self {
            auth: AuthService::new(
                database.clone(),
                settings,
                hooks.clone(),
                mail.outbox.clone(),
            )?,
            movies: MovieService::new(database.clone(), settings, hooks.clone())?,
            audit: AuditService::new(database.clone(), &settings.audit),
            idempotency: IdempotencyService::new(database.clone(), &settings.idempotency),
            limits: RateLimiter::new(&database, &settings.limits)?,
            mail,
            // [xtask] service constructors
            database,
            hooks,
        })
    }
}

//! HTTP integration tests: the real app on a free port, real HTTP, real databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod accounts;
mod audit;
mod auth;
mod binary;
mod browser;
mod cache;
mod fleet;
mod fuzz;
mod health;
mod hostile;
mod idempotency;
mod introspection;
mod key_rotation;
mod login_flood;
mod mail;
mod movie_writes;
mod movies;
mod oauth_clients;
mod observability;
mod openapi;
mod proxies;
mod rate_limits;
mod resilience;
mod scopes;
mod sessions;
mod stopping;
mod tls;
// [xtask] test modules

use myapi_services::auth::Role;
use myapi_services::{Services, Settings};
use myapi_web::{Application, ServerSettings};
use support::TestDb;

/// `cache.max_staleness_ms` by default: a change made past the server (plain SQL, another
/// services instance) is served after at most this long (README: Read cache).
pub const MAX_STALENESS: std::time::Duration = std::time::Duration::from_millis(100);

/// A running app and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub services: Services,
    /// The server's own services: where its login, refresh and reads can be paused
    /// (`hooks`), and its cache seen. `services` is another instance on the same
    /// database, as the CLI would be.
    pub served: Services,
    pub settings: Settings,
    pub server: ServerSettings,
    pub db: TestDb,
}

impl TestApp {
    /// `address` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Creates a reader through the service tier (what `myapi-cli create-user` calls).
    pub async fn create_user(&self, email: &str, password: &str) {
        self.create_user_with_role(email, password, Role::Reader)
            .await;
    }

    pub async fn create_user_with_role(&self, email: &str, password: &str, role: Role) {
        let services = self.services.clone();
        let (email, password) = (email.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || {
            services
                .auth
                .create_user("Test User", &email, password, role)
        })
        .await
        .unwrap()
        .unwrap();
    }

    /// `POST /token` with a form.
    pub async fn post_token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url("/token"))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// A token for a freshly created user.
    pub async fn login_new_user(&self, email: &str) -> String {
        self.create_user(email, "correct-horse-battery").await;
        let response = self
            .post_token(&[
                ("grant_type", "password"),
                ("username", email),
                ("password", "correct-horse-battery"),
            ])
            .await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Imports the shipped sample (`data/movies.csv`).
    pub async fn import_sample(&self) {
        let services = self.services.clone();
        tokio::task::spawn_blocking(move || {
            let csv = std::fs::File::open(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../data/movies.csv"
            ))
            .unwrap();
            services
                .movies
                .import_csv(csv, myapi_services::movies::OnExisting::Fail)
                .unwrap()
        })
        .await
        .unwrap();
    }

    /// The served OpenAPI document (checked to be 200 JSON).
    pub async fn openapi_document(&self) -> serde_json::Value {
        let response = self
            .client
            .get(self.url("/openapi.json"))
            .send()
            .await
            .unwrap();
        json_body(response, 200, "application/json").await
    }

    /// `GET path` with a bearer token.
    pub async fn get_authed(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Starts another instance on this app's database, as a fleet would: its settings with
    /// migrations off, a pool of 2, then `tweak`. Returns the new instance's address.
    pub async fn start_instance(&self, tweak: impl FnOnce(&mut Settings)) -> String {
        self.start_served_instance(tweak).await.0
    }

    /// [`Self::start_instance`], and the new instance's own services.
    pub async fn start_served_instance(
        &self,
        tweak: impl FnOnce(&mut Settings),
    ) -> (String, Services) {
        let mut settings = self.settings.clone();
        settings.database.run_migrations = false;
        settings.database.pool_size = 2.try_into().unwrap();
        tweak(&mut settings);
        serve(self.server.clone(), settings).await
    }
}

/// Builds the app (on a blocking thread: it connects and migrates) and runs it in the
/// background; returns its address and its services.
async fn serve(server: ServerSettings, settings: Settings) -> (String, Services) {
    let app = tokio::task::spawn_blocking(move || Application::build(&server, &settings))
        .await
        .unwrap()
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let served = app.services().clone();
    tokio::spawn(app.run_until_stopped());
    (address, served)
}

/// Server settings for tests: a free port, two workers.
pub fn test_server() -> ServerSettings {
    let defaults = myapi_services::SettingsSource::defaults().unwrap();
    let mut server = ServerSettings::from_source(&defaults).unwrap();
    server.port = 0;
    server.workers = 2.into();
    server
}

/// Starts the app on `db` with the services' settings adjusted by `tweak`.
pub async fn spawn_app_with(db: TestDb, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_configured(db, |_| {}, tweak).await
}

/// Starts the app on `db` with the server settings adjusted by `tweak`.
pub async fn spawn_app_with_server(db: TestDb, tweak: impl FnOnce(&mut ServerSettings)) -> TestApp {
    spawn_app_configured(db, tweak, |_| {}).await
}

/// Starts the app on `db` with both the server and the services' settings adjusted.
pub async fn spawn_app_configured(
    db: TestDb,
    tweak_server: impl FnOnce(&mut ServerSettings),
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = db.settings();
    tweak(&mut settings);
    let mut server = test_server();
    tweak_server(&mut server);
    let (address, served) = serve(server.clone(), settings.clone()).await;
    let services = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || Services::build(&settings, false))
            .await
            .unwrap()
            .unwrap()
    };
    // Idle connections are dropped before the server's keep-alive (5 s) closes them: a
    // request sent on one the server is closing that instant fails (IncompleteMessage).
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    TestApp {
        address,
        client,
        services,
        served,
        settings,
        server,
        db,
    }
}

/// Starts the app on `db` with the test settings.
pub async fn spawn_app(db: TestDb) -> TestApp {
    spawn_app_with(db, |_| {}).await
}

/// The JSON body, after checking the status and content type.
pub async fn json_body(
    response: reqwest::Response,
    status: u16,
    content_type: &str,
) -> serde_json::Value {
    assert_eq!(response.status(), status, "unexpected status");
    let ct = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        ct.starts_with(content_type),
        "content-type {ct}, wanted {content_type}"
    );
    response.json().await.unwrap()
}

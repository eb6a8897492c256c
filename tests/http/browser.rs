//! Swagger UI in a real headless Chromium: authorize with the OAuth2 password flow as a
//! person would, run `GET /movies/new`, and see 200 with a known title. Saves a screenshot
//! to `target/artifacts/swagger-authorized.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them
//! the test says so and skips — except under `CI=true`, where it fails.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};

use crate::spawn_app;
use crate::support::{Backend, TestDb, in_ci};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(30);

/// Kills chromedriver when the test ends, however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_authorizes_and_calls_movies_new() {
    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists() {
        assert!(
            !in_ci(),
            "CI=true needs {CHROMIUM} and {CHROMEDRIVER} (Debian chromium, chromium-driver)"
        );
        eprintln!("SKIPPED browser test: install Debian packages chromium and chromium-driver");
        return;
    }
    let app = spawn_app(TestDb::new(Backend::Sqlite).unwrap()).await;
    app.import_sample().await;
    app.create_user("swagger@example.com", "swagger-password")
        .await;

    let port = free_port();
    let _driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let profile = tempfile::tempdir().unwrap();
    let capabilities = serde_json::json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                "--window-size=1280,2200", format!("--user-data-dir={}", profile.path().display()),
            ],
        }
    });
    let mut client = None;
    for _ in 0..50 {
        let builder = ClientBuilder::native()
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        if let Ok(connected) = builder {
            client = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let browser = client.expect("chromedriver did not come up");
    let result = drive(&browser, &app.url("/docs/")).await;
    let screenshot = browser.screenshot().await;
    let _ = browser.close().await;
    if let Ok(png) = screenshot {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/artifacts");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(format!("{dir}/swagger-authorized.png"), png).unwrap();
    }
    result.unwrap();
}

async fn drive(browser: &fantoccini::Client, docs_url: &str) -> Result<(), String> {
    let css = |s: &'static str| Locator::Css(s);
    let find = |s: &'static str| async move {
        browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(s))
            .await
            .map_err(|e| format!("{s}: {e}"))
    };
    browser.goto(docs_url).await.map_err(|e| e.to_string())?;

    // Authorize with the password flow.
    find("button.btn.authorize")
        .await?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    find("#oauth_username")
        .await?
        .send_keys("swagger@example.com")
        .await
        .map_err(|e| e.to_string())?;
    find("#oauth_password")
        .await?
        .send_keys("swagger-password")
        .await
        .map_err(|e| e.to_string())?;
    find(".auth-btn-wrapper button.authorize")
        .await?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    // A successful login turns the modal's button into "Logout".
    let logout = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//div[contains(@class,'auth-btn-wrapper')]//button[normalize-space()='Logout']",
        ))
        .await;
    if logout.is_err() {
        let errors = browser
            .find_all(css(".auth-container .errors"))
            .await
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        for error in errors {
            text.push_str(&error.text().await.unwrap_or_default());
        }
        return Err(format!("authorization failed: {text}"));
    }
    find("button.btn-done")
        .await?
        .click()
        .await
        .map_err(|e| e.to_string())?;

    // Try GET /movies/new with year 1990 and rating 9.
    find("#operations-movies-new_movies .opblock-summary")
        .await?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    find("#operations-movies-new_movies button.try-out__btn")
        .await?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    find("#operations-movies-new_movies tr[data-param-name='year'] input")
        .await?
        .send_keys("1990")
        .await
        .map_err(|e| e.to_string())?;
    find("#operations-movies-new_movies tr[data-param-name='rating'] input")
        .await?
        .send_keys("9")
        .await
        .map_err(|e| e.to_string())?;
    find("#operations-movies-new_movies button.execute")
        .await?
        .click()
        .await
        .map_err(|e| e.to_string())?;

    let status = find("#operations-movies-new_movies .live-responses-table tbody tr.response .response-col_status").await?;
    let status = status.text().await.map_err(|e| e.to_string())?;
    let body = find("#operations-movies-new_movies .live-responses-table tbody tr.response .response-col_description").await?;
    let body = body.text().await.map_err(|e| e.to_string())?;
    if status.trim() != "200" || !body.contains("The Shawshank Redemption") {
        return Err(format!(
            "expected 200 with The Shawshank Redemption, got {status}: {body}"
        ));
    }
    Ok(())
}

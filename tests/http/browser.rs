//! Swagger UI in a real headless Chromium, used as a person would:
//!
//! 1. Authorize: the OAuth2 password-flow dialog offers every scope; an editor ticks
//!    `movies:read` and `movies:write` and logs in.
//! 2. `GET /movies/new` with year 1990 and rating 9: 200 with a known title. The screenshot
//!    `target/artifacts/swagger-authorized.png` is taken here.
//! 3. `GET /movies/1`, reading the `etag` from the response headers Swagger UI shows; then
//!    `PATCH /movies/1` with that `If-Match` and the merge patch `{"rating": 9.3}`: 200, the
//!    new rating and a new ETag. The screenshot `target/artifacts/swagger-patched.png` is
//!    taken here. Then the same PATCH again, now with a stale tag: 412.
//!
//! Every `/docs/` response carries the Content-Security-Policy, and the browser logs no
//! violation of it all along: Swagger UI works under it.
//!
//! On failure the page as it was is saved to `target/artifacts/swagger-failure.{png,html}`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them
//! the test says so and skips — except under `CI=true`, where it fails.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use myapi_services::auth::Role;
use myapi_web::middleware::DOCS_CONTENT_SECURITY_POLICY;

use crate::spawn_app;
use crate::support::{Backend, TestDb, in_ci};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(30);
const EMAIL: &str = "swagger-editor@example.com";
const PASSWORD: &str = "swagger-password";
const ARTIFACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/artifacts");

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
async fn swagger_ui_authorizes_reads_and_patches_with_if_match() {
    let app = spawn_app(TestDb::new(Backend::Sqlite).unwrap()).await;
    app.import_sample().await;
    app.create_user_with_role(EMAIL, PASSWORD, Role::Editor)
        .await;
    // The policy is on Swagger UI's responses only; this part needs no browser.
    for path in [
        "/docs/",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-security-policy"],
            DOCS_CONTENT_SECURITY_POLICY,
            "{path}"
        );
    }
    let api = app.client.get(app.url("/health")).send().await.unwrap();
    assert!(!api.headers().contains_key("content-security-policy"));

    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists() {
        assert!(
            !in_ci(),
            "CI=true needs {CHROMIUM} and {CHROMEDRIVER} (Debian chromium, chromium-driver)"
        );
        eprintln!("SKIPPED browser test: install Debian packages chromium and chromium-driver");
        return;
    }

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
        },
        "goog:loggingPrefs": { "browser": "ALL" },
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
    std::fs::create_dir_all(ARTIFACTS).unwrap();
    for stale in ["swagger-failure.png", "swagger-failure.html"] {
        let _ = std::fs::remove_file(format!("{ARTIFACTS}/{stale}"));
    }
    let page = Page(&browser);
    let mut result = drive(&page, &app.url("/docs/")).await;
    if result.is_ok() {
        result = no_csp_violation(&browser).await;
    }
    if result.is_err() {
        page.screenshot("swagger-failure.png").await;
        if let Ok(html) = browser.source().await {
            std::fs::write(format!("{ARTIFACTS}/swagger-failure.html"), html).unwrap();
        }
    }
    let _ = browser.close().await;
    result.unwrap();

    // What the browser did, seen from outside: movie 1 has the patched rating.
    let token = app
        .post_token(&[("username", EMAIL), ("password", PASSWORD)])
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let movie: serde_json::Value = app
        .get_authed("/movies/1", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(movie["rating"], 9.3);
}

async fn drive(page: &Page<'_>, docs_url: &str) -> Result<(), String> {
    page.0.goto(docs_url).await.map_err(|e| e.to_string())?;
    authorize(page).await?;
    movies_new(page).await?;
    page.screenshot("swagger-authorized.png").await;
    patch_with_if_match(page).await
}

/// chromedriver's log of the browser console (`goog:loggingPrefs`), drained by each read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (reqwest::Method, Option<String>) {
        (reqwest::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// Every console line since the page first loaded: none may report a refused resource or
/// script (Chromium logs each CSP violation as `Refused to …`).
async fn no_csp_violation(browser: &Client) -> Result<(), String> {
    let log = browser
        .issue_cmd(BrowserLog)
        .await
        .map_err(|e| format!("browser log: {e}"))?;
    let entries = log.as_array().ok_or(format!("browser log: {log}"))?;
    let refused: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|entry| {
            let message = entry["message"].as_str().unwrap_or_default();
            message.contains("Refused to") || message.contains("Content Security Policy")
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!("CSP violations: {refused:#?}"))
    }
}

/// The password flow as an editor, with the scopes `movies:read` and `movies:write` ticked.
async fn authorize(page: &Page<'_>) -> Result<(), String> {
    page.click(&css("button.btn.authorize")).await?;
    page.find(&css("#oauth_username"))
        .await?
        .send_keys(EMAIL)
        .await
        .map_err(|e| e.to_string())?;
    page.find(&css("#oauth_password"))
        .await?
        .send_keys(PASSWORD)
        .await
        .map_err(|e| e.to_string())?;

    // The dialog offers the document's scopes, none ticked.
    page.find(&css(".auth-container .scopes")).await?;
    let mut offered = Vec::new();
    for name in page
        .all(&css(".auth-container .scopes .checkbox p.name"))
        .await?
    {
        offered.push(name.text().await.map_err(|e| e.to_string())?);
    }
    let mut expected: Vec<&str> = myapi_services::auth::SCOPES.to_vec();
    expected.sort_unstable();
    if offered != expected {
        return Err(format!("scopes offered: {offered:?}"));
    }
    let checked = page
        .0
        .execute(
            "return [...document.querySelectorAll('.auth-container .scopes input[type=checkbox]')]\
             .map(box => box.checked)",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    let none_ticked = vec![serde_json::Value::Bool(false); myapi_services::auth::SCOPES.len()];
    if checked != serde_json::Value::Array(none_ticked) {
        return Err(format!("scope checkboxes before ticking: {checked}"));
    }
    // The checkboxes are styled away; a person clicks their labels.
    for scope in ["movies:read", "movies:write"] {
        page.click(&scope_label(scope)).await?;
    }
    let checked = page
        .0
        .execute(
            "return [...document.querySelectorAll('.auth-container .scopes input[type=checkbox]')]\
             .map(box => box.checked)",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    let ticked: Vec<bool> = expected
        .iter()
        .map(|scope| ["movies:read", "movies:write"].contains(scope))
        .collect();
    if checked != serde_json::json!(ticked) {
        return Err(format!("scope checkboxes after ticking: {checked}"));
    }

    page.click(&css(".auth-btn-wrapper button.authorize"))
        .await?;
    // A successful login turns the modal's button into "Logout".
    let logout = page
        .find(&xpath(
            "//div[contains(@class,'auth-btn-wrapper')]//button[normalize-space()='Logout']",
        ))
        .await;
    if logout.is_err() {
        let mut text = String::new();
        for error in page.all(&css(".auth-container .errors")).await? {
            text.push_str(&error.text().await.unwrap_or_default());
        }
        return Err(format!("authorization failed: {text}"));
    }
    // The token was asked for with the scopes ticked (the PATCH below shows it was granted).
    let asked = page
        .0
        .execute(
            "return window.ui.authSelectors.authorized().getIn(['oauth2', 'scopes']).toJS()",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    if asked != serde_json::json!(["movies:read", "movies:write"]) {
        return Err(format!("scopes asked for: {asked}"));
    }
    page.click(&css("button.btn-done")).await
}

/// `GET /movies/new` with year 1990 and rating 9.
async fn movies_new(page: &Page<'_>) -> Result<(), String> {
    let op = "#operations-movies-new_movies";
    page.open_and_try(op).await?;
    page.type_into(&param(op, "year"), "1990").await?;
    page.type_into(&param(op, "rating"), "9").await?;
    page.click(&css(&format!("{op} button.execute"))).await?;

    let status = page.status(op, |s| !s.is_empty()).await?;
    let body = page.text(&response_body(op)).await?;
    if status != "200" || !body.contains("The Shawshank Redemption") {
        return Err(format!(
            "expected 200 with The Shawshank Redemption, got {status}: {body}"
        ));
    }
    Ok(())
}

/// `GET /movies/1` for its ETag, `PATCH /movies/1` with it (200), and again (412).
async fn patch_with_if_match(page: &Page<'_>) -> Result<(), String> {
    let get = "#operations-movies-get_movie";
    page.open_and_try(get).await?;
    page.type_into(&param(get, "movie_id"), "1").await?;
    page.click(&css(&format!("{get} button.execute"))).await?;
    let status = page.status(get, |s| !s.is_empty()).await?;
    let body = page.text(&response_body(get)).await?;
    if status != "200" || !body.contains("The Shawshank Redemption") || !body.contains("9.2") {
        return Err(format!("GET /movies/1: {status}: {body}"));
    }
    let etag = page.response_header(get, "etag").await?;
    if !(etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"')) {
        return Err(format!("GET /movies/1: not a strong ETag: {etag}"));
    }

    let patch = "#operations-movies-patch_movie";
    page.open_and_try(patch).await?;
    page.type_into(&param(patch, "movie_id"), "1").await?;
    page.type_into(&param(patch, "If-Match"), &etag).await?;
    // The one request media type, already selected.
    let content_type = page
        .find(&css(&format!(
            "{patch} .opblock-section-request-body select"
        )))
        .await?
        .prop("value")
        .await
        .map_err(|e| e.to_string())?;
    if content_type.as_deref() != Some("application/merge-patch+json") {
        return Err(format!("PATCH request body media type: {content_type:?}"));
    }
    page.replace_text(
        &css(&format!("{patch} textarea.body-param__text")),
        r#"{"rating": 9.3}"#,
    )
    .await?;
    page.click(&css(&format!("{patch} button.execute"))).await?;
    let status = page.status(patch, |s| !s.is_empty()).await?;
    let body = page.text(&response_body(patch)).await?;
    let new_etag = page
        .response_header(patch, "etag")
        .await
        .unwrap_or_default();
    if status != "200"
        || !body.contains(r#""rating": 9.3"#)
        || !body.contains("The Shawshank Redemption")
    {
        return Err(format!(
            "PATCH /movies/1 with If-Match {etag}: {status}: {body}"
        ));
    }
    if new_etag.is_empty() || new_etag == etag {
        return Err(format!("PATCH /movies/1: ETag {etag} became {new_etag:?}"));
    }
    // In the screenshot: the parameters, the body, the curl command and the response.
    page.scroll_to(&css(&format!("{patch} .opblock-section-header")))
        .await?;
    page.screenshot("swagger-patched.png").await;

    // Again with the same, now stale, tag: 412, and the movie keeps its new rating.
    page.click(&css(&format!("{patch} button.btn-clear")))
        .await?;
    page.click(&css(&format!("{patch} button.execute"))).await?;
    let status = page
        .status(patch, |s| !s.is_empty() && !s.starts_with("200"))
        .await?;
    let body = page.text(&response_body(patch)).await?;
    if status != "412" {
        return Err(format!(
            "PATCH /movies/1 with stale If-Match {etag}: {status}: {body}"
        ));
    }
    Ok(())
}

fn css(selector: &str) -> Sel {
    Sel::Css(selector.to_owned())
}

fn xpath(path: &str) -> Sel {
    Sel::XPath(path.to_owned())
}

/// The input of the parameter `name` of the operation block `op`.
fn param(op: &str, name: &str) -> Sel {
    css(&format!("{op} tr[data-param-name='{name}'] input"))
}

/// The live response's details (its body, then its headers) of the operation block `op`.
fn response_body(op: &str) -> Sel {
    css(&format!(
        "{op} .live-responses-table tbody tr.response .response-col_description"
    ))
}

/// The label of a scope's checkbox in the Authorize dialog (CSS ids cannot hold the `:`).
fn scope_label(scope: &str) -> Sel {
    xpath(&format!(
        "//div[contains(@class,'scopes')]//label[.//p[@class='name' and text()='{scope}']]"
    ))
}

/// A CSS selector or an XPath, owned.
enum Sel {
    Css(String),
    XPath(String),
}

impl Sel {
    fn locator(&self) -> Locator<'_> {
        match self {
            Sel::Css(s) => Locator::Css(s),
            Sel::XPath(s) => Locator::XPath(s),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Sel::Css(s) | Sel::XPath(s) => s,
        }
    }
}

/// The browser, with waits: every look-up retries until `WAIT` has passed.
struct Page<'a>(&'a Client);

impl Page<'_> {
    async fn find(&self, sel: &Sel) -> Result<Element, String> {
        self.0
            .wait()
            .at_most(WAIT)
            .for_element(sel.locator())
            .await
            .map_err(|e| format!("{}: {e}", sel.as_str()))
    }

    async fn all(&self, sel: &Sel) -> Result<Vec<Element>, String> {
        self.0
            .find_all(sel.locator())
            .await
            .map_err(|e| format!("{}: {e}", sel.as_str()))
    }

    /// Clicks the element, retrying while it is not (yet) clickable or is re-rendered.
    async fn click(&self, sel: &Sel) -> Result<(), String> {
        self.retry(sel, async |element| element.click().await.map(drop))
            .await
    }

    async fn type_into(&self, sel: &Sel, text: &str) -> Result<(), String> {
        self.retry(sel, async |element| element.send_keys(text).await)
            .await?;
        self.wait_for_value(sel, text).await
    }

    /// Selects all the element's text and types `text` over it. (Clearing first would let
    /// Swagger UI's request body editor put its example back.)
    async fn replace_text(&self, sel: &Sel, text: &str) -> Result<(), String> {
        self.retry(sel, async |element| {
            let arg = serde_json::to_value(&element)
                .map_err(|e| fantoccini::error::CmdError::NotJson(e.to_string()))?;
            self.0.execute("arguments[0].select()", vec![arg]).await?;
            element.send_keys(text).await
        })
        .await?;
        self.wait_for_value(sel, text).await
    }

    async fn wait_for_value(&self, sel: &Sel, text: &str) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let element = self.find(sel).await?;
            let value = element.prop("value").await.ok().flatten();
            if value.as_deref() == Some(text) {
                return Ok(());
            }
            if start.elapsed() > WAIT {
                return Err(format!(
                    "{}: value {value:?}, wanted {text:?}",
                    sel.as_str()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `action` on the element, finding it again after errors until `WAIT` has passed.
    async fn retry(
        &self,
        sel: &Sel,
        action: impl AsyncFn(Element) -> Result<(), fantoccini::error::CmdError>,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let element = self.find(sel).await?;
            match action(element).await {
                Ok(()) => return Ok(()),
                Err(e) if start.elapsed() > WAIT => {
                    return Err(format!("{}: {e}", sel.as_str()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The element's text, once it has some.
    async fn text(&self, sel: &Sel) -> Result<String, String> {
        self.text_when(sel, |text| !text.is_empty()).await
    }

    async fn text_when(&self, sel: &Sel, ready: impl Fn(&str) -> bool) -> Result<String, String> {
        let start = Instant::now();
        loop {
            let element = self.find(sel).await?;
            let text = element.text().await.unwrap_or_default();
            if ready(text.trim()) {
                return Ok(text.trim().to_owned());
            }
            if start.elapsed() > WAIT {
                return Err(format!("{}: text {text:?}", sel.as_str()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Expands the operation block and presses "Try it out".
    async fn open_and_try(&self, op: &str) -> Result<(), String> {
        self.click(&css(&format!("{op} .opblock-summary"))).await?;
        self.click(&css(&format!("{op} button.try-out__btn")))
            .await?;
        self.find(&css(&format!("{op} button.execute"))).await?;
        Ok(())
    }

    /// The live response's status code in the operation block `op`.
    async fn status(&self, op: &str, ready: impl Fn(&str) -> bool) -> Result<String, String> {
        let sel = css(&format!(
            "{op} .live-responses-table tbody tr.response .response-col_status"
        ));
        // The cell may also say "Undocumented" under the code.
        let status = self.text_when(&sel, ready).await?;
        Ok(status
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned())
    }

    /// A header of the live response in the operation block `op`, as Swagger UI shows it
    /// (`name: value`, the name in lower case).
    async fn response_header(&self, op: &str, name: &str) -> Result<String, String> {
        let lines = css(&format!(
            "{op} .live-responses-table .response-col_description span.headerline"
        ));
        self.find(&lines).await?;
        let prefix = format!("{name}:");
        for line in self.all(&lines).await? {
            let line = line.text().await.map_err(|e| e.to_string())?;
            if let Some(value) = line.trim().strip_prefix(&prefix) {
                return Ok(value.trim().to_owned());
            }
        }
        Err(format!("{op}: no {name} among the response headers"))
    }

    /// Scrolls the element to the top of the window.
    async fn scroll_to(&self, sel: &Sel) -> Result<(), String> {
        let element = self.find(sel).await?;
        let arg = serde_json::to_value(&element).map_err(|e| e.to_string())?;
        self.0
            .execute("arguments[0].scrollIntoView({block: 'start'})", vec![arg])
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn screenshot(&self, name: &str) {
        if let Ok(png) = self.0.screenshot().await {
            std::fs::write(format!("{ARTIFACTS}/{name}"), png).unwrap();
        }
    }
}

//! Movie writes over HTTP on both backends: POST/PUT/PATCH/DELETE, their validation and
//! media types, ETags and conditional requests (RFC 9110 §13), ids that never collide with
//! imported or hand-inserted ones, racing writers, the database's own constraints and
//! triggers, and CORS for writes.

use std::cell::Cell;
use std::time::Duration;

use myapi_services::ServiceError;
use myapi_services::auth::Role;
use myapi_services::movies::{IfMatch, MovieId, OnExisting, Version};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::task::JoinSet;

use crate::support::{TestDb, in_ci};
use crate::{MAX_STALENESS, TestApp, both_backends, json_body, spawn_app, spawn_app_with_server};

const PASSWORD: &str = "correct-horse-battery";
const JSON: &str = "application/json";
const MERGE_PATCH: &str = "application/merge-patch+json";
const PROBLEM: &str = "application/problem+json";

/// The app with the sample imported, and an editor's token (`movies:read movies:write`).
async fn app_with_editor(db: TestDb) -> (TestApp, String) {
    let app = spawn_app(db).await;
    app.import_sample().await;
    let token = editor_token(&app).await;
    (app, token)
}

async fn editor_token(app: &TestApp) -> String {
    app.create_user_with_role("editor@example.com", PASSWORD, Role::Editor)
        .await;
    let response = app
        .post_token(&[("username", "editor@example.com"), ("password", PASSWORD)])
        .await;
    json_body(response, 200, JSON).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A request with the token, an optional `If-Match` and an optional typed body.
fn write(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    if_match: Option<&str>,
    body: Option<(&str, String)>,
) -> reqwest::RequestBuilder {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    if let Some((content_type, body)) = body {
        request = request.header("content-type", content_type).body(body);
    }
    request
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.unwrap()
}

/// Sends `request` (`"METHOD /path"`) with the token, `If-Match` and typed body.
async fn call(
    app: &TestApp,
    token: &str,
    request: &str,
    if_match: Option<&str>,
    body: Option<(&str, String)>,
) -> reqwest::Response {
    let (method, path) = request.split_once(' ').unwrap();
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    send(write(app, token, method, path, if_match, body)).await
}

/// A JSON body.
fn json_of(body: impl Into<String>) -> Option<(&'static str, String)> {
    Some((JSON, body.into()))
}

/// A merge-patch body.
fn merge(body: &str) -> Option<(&'static str, String)> {
    Some((MERGE_PATCH, body.to_owned()))
}

/// One request of a table: its token (`None`: no `Authorization`), method, path,
/// `If-Match`, typed body, and the status it must get.
type Case<'a> = (
    Option<&'a str>,
    Method,
    &'a str,
    Option<&'a str>,
    Option<(&'a str, String)>,
    u16,
);

/// Sends each case in turn: an error must come as problem+json, a 204 empty.
async fn expect_statuses(app: &TestApp, cases: Vec<Case<'_>>) {
    for (token, method, path, if_match, body, status) in cases {
        let what = format!("{method} {path} If-Match {if_match:?} as {token:?}");
        let request = match token {
            Some(token) => write(app, token, method, path, if_match, body),
            None => {
                let request = app.client.request(method, app.url(path));
                match if_match {
                    Some(tag) => request.header("if-match", tag),
                    None => request,
                }
            }
        };
        let response = send(request).await;
        assert_eq!(response.status(), status, "{what}");
        match status {
            204 => assert!(response.text().await.unwrap().is_empty(), "{what}"),
            400.. => drop(json_body(response, status, PROBLEM).await),
            _ => {}
        }
    }
}

fn etag_of(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

/// The current ETag of `path`, from a GET.
async fn current_etag(app: &TestApp, token: &str, path: &str) -> String {
    let response = app.get_authed(path, token).await;
    assert_eq!(response.status(), 200, "GET {path}");
    etag_of(&response)
}

fn movie(title: &str, released: i64, rating: f64) -> String {
    json!({"title": title, "released": released, "rating": rating}).to_string()
}

/// The `field`s of a 422 problem, after checking it is one.
async fn refused_fields(response: reqwest::Response) -> Vec<String> {
    let body = json_body(response, 422, PROBLEM).await;
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn create_replace_patch_delete(db: TestDb) {
    let (app, token) = app_with_editor(db).await;

    // POST: 201, Location, ETag, the movie; the id is the next after the largest (45).
    let created = call(
        &app,
        &token,
        "POST /movies/",
        None,
        json_of(movie("Dune", 2021, 8.0)),
    )
    .await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/movies/46");
    let etag = etag_of(&created);
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "strong: {etag}"
    );
    let body = json_body(created, 201, JSON).await;
    assert_eq!(
        body,
        json!({"movie_id": 46, "title": "Dune", "released": 2021, "rating": 8.0})
    );

    // GET the Location: the same representation and ETag, from both id routes.
    for path in ["/movies/46", "/movies/?movie_id=46"] {
        let response = app.get_authed(path, &token).await;
        assert_eq!(etag_of(&response), etag, "{path}");
        assert_eq!(json_body(response, 200, JSON).await, body);
    }

    // PUT replaces: 200, the movie, a new ETag that GET agrees with.
    let replaced = call(
        &app,
        &token,
        "PUT /movies/46",
        Some(&etag),
        json_of(movie("Dune: Part One", 2021, 8.1)),
    )
    .await;
    let put_etag = etag_of(&replaced);
    assert_ne!(put_etag, etag);
    assert_eq!(
        json_body(replaced, 200, JSON).await,
        json!({"movie_id": 46, "title": "Dune: Part One", "released": 2021, "rating": 8.1})
    );
    assert_eq!(current_etag(&app, &token, "/movies/46").await, put_etag);

    // PATCH merges: only the fields sent change.
    let patched = call(
        &app,
        &token,
        "PATCH /movies/46",
        Some(&put_etag),
        merge(r#"{"rating": 8.3}"#),
    )
    .await;
    let patch_etag = etag_of(&patched);
    assert_ne!(patch_etag, put_etag);
    assert_eq!(
        json_body(patched, 200, JSON).await,
        json!({"movie_id": 46, "title": "Dune: Part One", "released": 2021, "rating": 8.3})
    );
    // A charset parameter is fine; `released` as JSON Schema's integer 2021.0 too.
    let patched = call(
        &app,
        &token,
        "PATCH /movies/46",
        Some(&patch_etag),
        Some((
            "application/merge-patch+json; charset=utf-8",
            r#"{"released": 2021.0, "title": "Dune"}"#.into(),
        )),
    )
    .await;
    let patch_etag = etag_of(&patched);
    assert_eq!(json_body(patched, 200, JSON).await["title"], "Dune");

    // DELETE: 204, then the movie is gone, and the old ETag fits nothing; PUT never
    // creates; a reader may read but not write; without a token, 401.
    let reader = app.login_new_user("reader@example.com").await;
    let (editor, reader) = (Some(token.as_str()), Some(reader.as_str()));
    let dune = || Some((JSON, movie("Dune", 2021, 8.0)));
    let gone = Some(patch_etag.as_str());
    expect_statuses(
        &app,
        vec![
            (editor, Method::DELETE, "/movies/46", gone, None, 204),
            (editor, Method::GET, "/movies/46", None, None, 404),
            (editor, Method::DELETE, "/movies/46", gone, None, 404),
            (editor, Method::PUT, "/movies/46", Some("*"), dune(), 404),
            (reader, Method::POST, "/movies/", None, dune(), 403),
            (reader, Method::DELETE, "/movies/1", Some("*"), None, 403),
            (None, Method::DELETE, "/movies/1", Some("*"), None, 401),
        ],
    )
    .await;
}
both_backends!(create_replace_patch_delete);

/// 404, then 428, then 412, then 415 or 422, whatever else is wrong with the request.
async fn conditional_writes_check_in_order(db: TestDb) {
    let (app, token) = app_with_editor(db).await;
    let etag = current_etag(&app, &token, "/movies/1").await;
    let bad_body = || Some(("text/plain", "not json".to_owned()));
    let invalid_body = || Some((JSON, movie("", 1700, 11.0)));

    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        // 404 before 428, 412 or a bad body.
        for if_match in [None, Some("\"1\""), Some("*")] {
            let response = send(write(
                &app,
                &token,
                method.clone(),
                "/movies/9999",
                if_match,
                bad_body(),
            ))
            .await;
            json_body(response, 404, PROBLEM).await;
        }
        // 428 before 412 or a bad body.
        let response = send(write(
            &app,
            &token,
            method.clone(),
            "/movies/1",
            None,
            bad_body(),
        ))
        .await;
        let problem = json_body(response, 428, PROBLEM).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("If-Match"),
            "{problem}"
        );
        // 412 before a bad body: another version, a weak tag (strong comparison), a
        // malformed or empty field.
        let weak = format!("W/{etag}");
        for if_match in ["\"1\"", weak.as_str(), "1", "", "\"1\", W/\"2\""] {
            let response = send(write(
                &app,
                &token,
                method.clone(),
                "/movies/1",
                Some(if_match),
                bad_body(),
            ))
            .await;
            json_body(response, 412, PROBLEM).await;
        }
    }
    // With a matching If-Match: 415 for the wrong media type (PATCH names its own in
    // Accept-Patch), 422 for an invalid body.
    let unchanged = current_etag(&app, &token, "/movies/1").await;
    assert_eq!(unchanged, etag, "nothing above wrote");
    let one = "/movies/1";
    const JSON_PATCH: &str = "application/json-patch+json";
    let wrong_types = [
        (Method::PUT, Some((MERGE_PATCH, movie("A", 2000, 5.0)))),
        (Method::PUT, None),
        (Method::PATCH, Some((JSON, "{}".into()))),
        (Method::PATCH, Some(("text/plain", "{}".into()))),
        (Method::PATCH, Some((JSON_PATCH, "{}".into()))),
    ];
    for (method, body) in wrong_types {
        let what = format!("{method} {body:?}");
        let patch = method == Method::PATCH;
        let response = send(write(&app, &token, method, one, Some(&etag), body)).await;
        let accept_patch = response.headers().get("accept-patch").cloned();
        assert_eq!(accept_patch.is_some(), patch, "{what}");
        if patch {
            assert_eq!(accept_patch.unwrap(), MERGE_PATCH, "{what}");
        }
        json_body(response, 415, PROBLEM).await;
    }
    let response = call(&app, &token, "PUT /movies/1", Some(&etag), invalid_body()).await;
    assert_eq!(
        refused_fields(response).await,
        ["title", "released", "rating"]
    );
    // A list naming the current tag matches, and so does `*`; then the old tag is stale.
    let (list, one) = (format!("\"1\", {etag}"), "/movies/1");
    let editor = Some(token.as_str());
    let rating = |rating: f64| Some((MERGE_PATCH, json!({ "rating": rating }).to_string()));
    expect_statuses(
        &app,
        vec![
            (editor, Method::PATCH, one, Some(&list), rating(9.3), 200),
            (editor, Method::PATCH, one, Some("*"), rating(9.2), 200),
        ],
    )
    .await;
    let now = json_body(app.get_authed(one, &token).await, 200, JSON).await;
    assert_eq!(now["rating"], 9.2);
    expect_statuses(
        &app,
        vec![
            (editor, Method::DELETE, one, Some(&etag), None, 412),
            (editor, Method::DELETE, one, Some("*"), None, 204),
        ],
    )
    .await;
}
both_backends!(conditional_writes_check_in_order);

/// How `If-Match` (on a PUT whose body is refused with 415 once the precondition holds, so
/// nothing is written) and `If-None-Match` (on a GET) are read, line by line as sent. `{etag}`
/// stands for the movie's current tag and `{v}` for its bare version.
async fn conditional_headers_are_read_per_rfc_9110(db: TestDb) {
    let (app, token) = app_with_editor(db).await;
    let etag = current_etag(&app, &token, "/movies/1").await;
    let version = etag.trim_matches('"').to_owned();
    let fill = |line: &str| line.replace("{etag}", &etag).replace("{v}", &version);
    let line = |raw: &str| reqwest::header::HeaderValue::from_bytes(fill(raw).as_bytes()).unwrap();
    // (lines of the field, If-Match answer, If-None-Match answer)
    let cases: &[(&[&str], u16, u16)] = &[
        (&[], 428, 200),
        (&["*"], 415, 304),
        (&[" * "], 415, 304),
        (&["{etag}"], 415, 304),
        (&["W/{etag}"], 412, 304),
        (&["\"0\""], 412, 200),
        (&["\"0\", {etag}"], 415, 304),
        (&["\"0\",{etag}, "], 415, 304),
        (&["\"0\", W/{etag}"], 412, 304),
        // Malformed: not `*` or a list of entity-tags.
        (&["{v}"], 412, 200),
        (&[""], 412, 200),
        (&["W/{v}"], 412, 200),
        (&["W/W/{etag}"], 412, 200),
        (&["{etag}x"], 412, 200),
        (&["\"{v}"], 412, 200),
        (&["\" {v}\""], 412, 200),
        // Malformed lists: RFC 9110 gives no answer for them. The elements that are
        // entity-tags are read (a write still needs the current tag or `*`), and a first
        // line of `*` is `*`.
        (&["{etag}, x"], 415, 304),
        (&["*, {etag}"], 415, 304),
        (&["*", "\"0\""], 415, 304),
        // obs-text is etagc too.
        (&["\"\u{e9}\", {etag}"], 415, 304),
        // A comma is an etagc character: `"a,b"` is one tag, and `"{v},0"` is not ours.
        (&["\"a,b\", {etag}"], 415, 304),
        (&["\"{v},0\""], 412, 200),
        // One field on repeated lines is one list.
        (&["\"0\"", "{etag}"], 415, 304),
        (&["\"0\"", "\"1\""], 412, 200),
    ];
    for (lines, if_match, if_none_match) in cases {
        let mut put = write(
            &app,
            &token,
            Method::PUT,
            "/movies/1",
            None,
            Some(("text/plain", "not json".to_owned())),
        );
        let mut get = app.client.get(app.url("/movies/1")).bearer_auth(&token);
        for raw in *lines {
            put = put.header("if-match", line(raw));
            get = get.header("if-none-match", line(raw));
        }
        let (put, get) = (send(put).await, send(get).await);
        assert_eq!(put.status(), *if_match, "If-Match: {lines:?}");
        assert_eq!(get.status(), *if_none_match, "If-None-Match: {lines:?}");
    }
    assert_eq!(current_etag(&app, &token, "/movies/1").await, etag);
}
both_backends!(conditional_headers_are_read_per_rfc_9110);

async fn bodies_are_validated_field_by_field(db: TestDb) {
    let (app, token) = app_with_editor(db).await;
    let post = |body: &str, content_type: &str| {
        write(
            &app,
            &token,
            Method::POST,
            "/movies/",
            None,
            Some((content_type, body.to_owned())),
        )
    };
    let cases: &[(&str, &[&str])] = &[
        // Every field is named at once, whatever is wrong with it.
        (
            r#"{"title": "", "released": 1799, "rating": 10.1}"#,
            &["title", "released", "rating"],
        ),
        (
            r#"{"title": 5, "released": "1994", "rating": null}"#,
            &["title", "released", "rating"],
        ),
        (r#"{"title": "A", "released": 1994}"#, &["rating"]),
        (
            r#"{"title": "A", "released": 1994, "rating": 9, "director": "x"}"#,
            &["director"],
        ),
        (
            r#"{"movie_id": 7, "title": "A", "released": 1994, "rating": 9}"#,
            &["movie_id"],
        ),
        (
            r#"{"title": "A", "released": 1994.5, "rating": 9.25}"#,
            &["released", "rating"],
        ),
        (
            r#"{"title": "A", "released": 99999999999999999999, "rating": 1e300}"#,
            &["released", "rating"],
        ),
        ("[1, 2]", &["body"]),
        ("\"movie\"", &["body"]),
    ];
    for (body, fields) in cases {
        assert_eq!(
            refused_fields(send(post(body, JSON)).await).await,
            *fields,
            "{body}"
        );
    }
    // The title rule: 1 to 500 characters (not bytes), no control characters, NUL included.
    let long = "é".repeat(500);
    for title in [long.as_str(), "A", "Amélie – ½ 🎬"] {
        let response = send(post(&movie(title, 2000, 5.0), JSON)).await;
        assert_eq!(json_body(response, 201, JSON).await["title"], title);
    }
    for title in [
        "",
        &"a".repeat(501),
        "tab\there",
        "nul\0here",
        "c1\u{85}here",
        "del\u{7f}",
    ] {
        let body = movie(title, 2000, 5.0);
        assert_eq!(
            refused_fields(send(post(&body, JSON)).await).await,
            ["title"],
            "{title:?}"
        );
    }
    // Years and ratings at and past their edges.
    for (released, rating) in [(1800, 0.0), (3000, 10.0), (1994, 9.2)] {
        let response = send(post(&movie("Edge", released, rating), JSON)).await;
        assert_eq!(json_body(response, 201, JSON).await["rating"], rating);
    }
    for (released, rating, fields) in [
        (1799, 5.0, &["released"][..]),
        (3001, 5.0, &["released"]),
        (2000, -0.1, &["rating"]),
        (2000, 10.1, &["rating"]),
        (2000, 0.05, &["rating"]),
        (2000, 0.30000000000000004, &["rating"]),
    ] {
        let body = movie("Edge", released, rating);
        assert_eq!(
            refused_fields(send(post(&body, JSON)).await).await,
            fields,
            "{body}"
        );
    }
    // Malformed JSON is 400, a wrong media type 415, an oversized body 413: all problem+json.
    for malformed in [
        "",
        "{",
        r#"{"title": "A",}"#,
        "{\"title\": \"\\ud800\"}",
        "\u{feff}{}",
    ] {
        let problem = json_body(send(post(malformed, JSON)).await, 400, PROBLEM).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("JSON"),
            "{malformed}: {problem}"
        );
    }
    let invalid_utf8 = write(&app, &token, Method::POST, "/movies/", None, None)
        .header("content-type", JSON)
        .body(b"{\"title\": \"\xff\", \"released\": 1994, \"rating\": 9}".to_vec());
    json_body(send(invalid_utf8).await, 400, PROBLEM).await;
    json_body(
        send(post(&movie("A", 2000, 5.0), "text/plain")).await,
        415,
        PROBLEM,
    )
    .await;
    json_body(
        send(post(&movie("A", 2000, 5.0), MERGE_PATCH)).await,
        415,
        PROBLEM,
    )
    .await;
    let missing_type =
        write(&app, &token, Method::POST, "/movies/", None, None).body(movie("A", 2000, 5.0));
    json_body(send(missing_type).await, 415, PROBLEM).await;
    let huge = movie(&"a".repeat(70_000), 2000, 5.0);
    json_body(send(post(&huge, JSON)).await, 413, PROBLEM).await;

    // PATCH: null removes a field a movie needs; unknown members are refused even as null;
    // a non-object patch replaces the whole document (RFC 7396), which is no movie.
    let etag = current_etag(&app, &token, "/movies/1").await;
    let patch = |body: &str| {
        write(
            &app,
            &token,
            Method::PATCH,
            "/movies/1",
            Some(&etag),
            Some((MERGE_PATCH, body.to_owned())),
        )
    };
    for (body, fields) in [
        (r#"{"title": null}"#, &["title"][..]),
        (r#"{"director": null}"#, &["director"]),
        (r#"{"movie_id": 1}"#, &["movie_id"]),
        (r#"{"rating": "9"}"#, &["rating"]),
        (
            r#"{"released": 3001, "rating": 9.25}"#,
            &["released", "rating"],
        ),
        ("[]", &["body"]),
        ("null", &["body"]),
    ] {
        assert_eq!(
            refused_fields(send(patch(body)).await).await,
            fields,
            "{body}"
        );
    }
    json_body(send(patch("{")).await, 400, PROBLEM).await;
    assert_eq!(
        current_etag(&app, &token, "/movies/1").await,
        etag,
        "no refused write changed it"
    );
}
both_backends!(bodies_are_validated_field_by_field);

/// A body of thousands of unknown members gets a small 422: the first 20 are named, the rest
/// counted in `more_errors`, so an answer is never many times the size of its request.
async fn a_422_names_at_most_20_fields_and_counts_the_rest(db: TestDb) {
    let (app, token) = app_with_editor(db).await;
    let unknown = 6000;
    let mut body = serde_json::Map::new();
    body.insert("title".into(), json!("A"));
    body.insert("released".into(), json!(1994));
    body.insert("rating".into(), json!(9));
    for index in 0..unknown {
        body.insert(format!("k{index:x}"), json!(0));
    }
    let body = serde_json::Value::Object(body).to_string();
    assert!(body.len() > 50_000, "{}", body.len());
    let response = call(&app, &token, "POST /movies/", None, json_of(body.clone())).await;
    assert_eq!(response.status(), 422);
    let answer = response.bytes().await.unwrap();
    assert!(answer.len() < 4096, "{} bytes", answer.len());
    let problem: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 20);
    assert!(
        errors
            .iter()
            .all(|e| e["message"] == "is not a field of a movie"),
        "{problem}"
    );
    assert_eq!(problem["more_errors"], unknown - 20);
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.ends_with("; and 5980 more"), "{detail}");

    // Within the cap, every field is named and nothing is counted.
    let response = call(
        &app,
        &token,
        "POST /movies/",
        None,
        json_of(r#"{"a": 1, "b": 2}"#.to_owned()),
    )
    .await;
    let problem = json_body(response, 422, PROBLEM).await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 5, "{problem}");
    assert!(problem.get("more_errors").is_none(), "{problem}");
}
both_backends!(a_422_names_at_most_20_fields_and_counts_the_rest);

async fn conditional_reads_answer_304(db: TestDb) {
    let (app, token) = app_with_editor(db).await;
    let etag = current_etag(&app, &token, "/movies/1").await;
    let get = |path: &str, if_none_match: &str| {
        app.client
            .get(app.url(path))
            .bearer_auth(&token)
            .header("if-none-match", if_none_match)
            .send()
    };
    let weak = format!("W/{etag}");
    let listed = format!("\"0\", {etag}");
    for path in ["/movies/1", "/movies/?movie_id=1"] {
        for matching in [etag.as_str(), weak.as_str(), listed.as_str(), "*"] {
            let response = get(path, matching).await.unwrap();
            assert_eq!(response.status(), 304, "{path} {matching}");
            assert_eq!(etag_of(&response), etag);
            assert!(response.text().await.unwrap().is_empty());
        }
        for other in ["\"0\"", "W/\"0\"", "garbage"] {
            let response = get(path, other).await.unwrap();
            assert_eq!(response.status(), 200, "{path} {other}");
        }
    }
    // 404 wins over a matching `*`.
    json_body(get("/movies/9999", "*").await.unwrap(), 404, PROBLEM).await;
    // After a write the old tag no longer matches.
    let patched = call(&app, &token, "PATCH /movies/1", Some(&etag), merge("{}")).await;
    let new_etag = etag_of(&patched);
    assert_ne!(
        new_etag, etag,
        "every write bumps the version, even an empty patch"
    );
    assert_eq!(get("/movies/1", &etag).await.unwrap().status(), 200);
    assert_eq!(get("/movies/1", &new_etag).await.unwrap().status(), 304);
}
both_backends!(conditional_reads_answer_304);

/// Several PATCHes with the same ETag, all in flight at once: exactly one wins, the others
/// get 412, and the movie is the winner's. With `*`, racing patches of different fields
/// all apply: each is re-applied to the movie as the others left it, so none is lost.
async fn racing_patches(db: TestDb) {
    let (app, token) = app_with_editor(db).await;
    for round in 0..20 {
        let etag = current_etag(&app, &token, "/movies/1").await;
        let mut writers = JoinSet::new();
        for writer in 0..8 {
            let request = write(
                &app,
                &token,
                Method::PATCH,
                "/movies/1",
                Some(&etag),
                Some((
                    MERGE_PATCH,
                    json!({"title": format!("Round {round} writer {writer}")}).to_string(),
                )),
            );
            writers.spawn(async move { request.send().await.unwrap() });
        }
        let mut winners = Vec::new();
        while let Some(response) = writers.join_next().await {
            let response = response.unwrap();
            match response.status() {
                StatusCode::OK => {
                    let etag = etag_of(&response);
                    winners.push((etag, json_body(response, 200, JSON).await));
                }
                StatusCode::PRECONDITION_FAILED => {
                    json_body(response, 412, PROBLEM).await;
                }
                other => panic!("round {round}: {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (winner_etag, winner) = winners.pop().unwrap();
        let now = app.get_authed("/movies/1", &token).await;
        assert_eq!(etag_of(&now), winner_etag);
        assert_eq!(json_body(now, 200, JSON).await, winner);
    }

    let mut writers = JoinSet::new();
    for patch in [
        json!({"title": "All three"}),
        json!({"released": 1995}),
        json!({"rating": 9.9}),
    ] {
        let request = write(
            &app,
            &token,
            Method::PATCH,
            "/movies/2",
            Some("*"),
            Some((MERGE_PATCH, patch.to_string())),
        );
        writers.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = writers.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let movie = json_body(app.get_authed("/movies/2", &token).await, 200, JSON).await;
    assert_eq!(
        movie,
        json!({"movie_id": 2, "title": "All three", "released": 1995, "rating": 9.9})
    );
}
both_backends!(racing_patches);

/// A write that lands between the service's precondition check and its conditional
/// update — inside `edit`, which runs between the two — is detected every time: a named
/// version then fails (412), while `*` re-applies the edit to what the other write left.
/// The writes go through the server's own services, which invalidate its cache before they
/// return, so the read that follows sees them at once (through another instance it would
/// wait for the notification).
async fn a_write_between_check_and_update(db: TestDb) {
    let (app, token) = app_with_editor(db).await;
    let etag = current_etag(&app, &token, "/movies/1").await;
    let version: Version = etag.trim_matches('"').parse().unwrap();
    let services = app.served.clone();
    let outcomes = tokio::task::spawn_blocking(move || {
        let id = MovieId(1);
        let mut outcomes = Vec::new();
        for (condition, rating) in [(IfMatch::AnyOf(vec![version]), 1.0), (IfMatch::Any, 2.0)] {
            let (edits, interloped) = (Cell::new(0), Cell::new(false));
            let outcome = services.movies.update(id, Some(&condition), |current| {
                edits.set(edits.get() + 1);
                if !interloped.replace(true) {
                    services.movies.update(id, Some(&IfMatch::Any), |current| {
                        Ok::<_, ServiceError>(json!({
                            "title": "Interloper",
                            "released": current.released,
                            "rating": rating,
                        }))
                    })?;
                }
                Ok::<_, ServiceError>(json!({
                    "title": "Outer",
                    "released": current.released,
                    "rating": current.rating,
                }))
            });
            outcomes.push((outcome.map(|written| written.movie), edits.get()));
        }
        outcomes
    })
    .await
    .unwrap();
    let mut outcomes = outcomes.into_iter();
    let (named, edits) = outcomes.next().unwrap();
    assert!(
        matches!(named, Err(ServiceError::PreconditionFailed(_))),
        "{named:?}"
    );
    assert_eq!(edits, 1);
    let (any, edits) = outcomes.next().unwrap();
    let any = any.unwrap();
    assert_eq!((any.title.as_str(), any.rating, edits), ("Outer", 2.0, 2));
    let now = json_body(app.get_authed("/movies/1", &token).await, 200, JSON).await;
    assert_eq!(now["title"], "Outer");
    assert_eq!(now["rating"], 2.0);
}
both_backends!(a_write_between_check_and_update);

/// Another client of the test database: psql on PostgreSQL, Python's sqlite3 on SQLite.
#[derive(Clone)]
struct PlainSql {
    dsn: String,
    postgres: bool,
}

impl PlainSql {
    fn of(app: &TestApp) -> Self {
        Self {
            dsn: app.db.dsn.clone(),
            postgres: app.services.database.backend_name() == "postgres",
        }
    }

    /// The rows `sql` returns, `|`-separated; `Err` when the database refused it, `None`
    /// when the client is missing (outside CI). Returns once the server's read cache may
    /// no longer serve what `sql` changed.
    fn run(&self, sql: &str) -> Option<Result<String, String>> {
        let output = if self.postgres {
            std::process::Command::new("psql")
                .args([
                    self.dsn.as_str(),
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-At",
                    "-c",
                ])
                .arg(format!("SET search_path TO myapi; {sql}"))
                .output()
        } else {
            std::process::Command::new("python3")
                .args([
                    "-c",
                    "import sqlite3, sys\n\
                     db = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)\n\
                     for row in db.execute(sys.argv[2]): print('|'.join(map(str, row)))",
                    self.dsn.strip_prefix("sqlite://").unwrap(),
                    sql,
                ])
                .output()
        };
        match output {
            Ok(output) if output.status.success() => {
                std::thread::sleep(MAX_STALENESS);
                Some(Ok(String::from_utf8_lossy(&output.stdout)
                    .trim()
                    .to_owned()))
            }
            Ok(output) => Some(Err(String::from_utf8_lossy(&output.stderr).into_owned())),
            Err(error) => {
                assert!(!in_ci(), "CI=true needs psql and python3: {error}");
                eprintln!("SKIPPED plain-SQL part: {error}");
                None
            }
        }
    }
}

/// Ids that POST assigns never collide with ids an import or plain SQL chose, also when
/// they run at the same time; rows inserted by plain SQL naming only the original columns
/// stay valid; every UPDATE, by anyone, changes the ETag.
async fn ids_and_versions_agree_with_other_writers(db: TestDb) {
    let (app, token) = app_with_editor(db).await;
    let sql = PlainSql::of(&app);
    let Some(inserted) = sql.run(
        "INSERT INTO movies (movie_id, title, released, rating) VALUES (100, 'Plain', 2000, 7.5)",
    ) else {
        return;
    };
    inserted.unwrap();
    let plain = app.get_authed("/movies/100", &token).await;
    let plain_etag = etag_of(&plain);
    assert_eq!(
        json_body(plain, 200, JSON).await,
        json!({"movie_id": 100, "title": "Plain", "released": 2000, "rating": 7.5})
    );
    let created = call(
        &app,
        &token,
        "POST /movies/",
        None,
        json_of(movie("After plain", 2001, 7.0)),
    )
    .await;
    assert_eq!(created.headers()["location"], "/movies/101");

    // Plain SQL and the importer's update both change the ETag (the trigger).
    sql.run("UPDATE movies SET title = 'Plain, updated' WHERE movie_id = 100")
        .unwrap()
        .unwrap();
    let after_sql = current_etag(&app, &token, "/movies/100").await;
    assert_ne!(after_sql, plain_etag);
    // Even when the statement sets the version itself, it only ever moves forward.
    sql.run("UPDATE movies SET version = 1 WHERE movie_id = 100")
        .unwrap()
        .unwrap();
    let after_reset = current_etag(&app, &token, "/movies/100").await;
    assert_ne!(after_reset, after_sql);
    let services = app.services.clone();
    tokio::task::spawn_blocking(move || {
        let csv = "movie_id,title,released,rating\n100,Plain again,2000,7.6\n";
        services
            .movies
            .import_csv(csv.as_bytes(), OnExisting::Update)
            .unwrap()
    })
    .await
    .unwrap();
    tokio::time::sleep(MAX_STALENESS).await;
    let after_import = current_etag(&app, &token, "/movies/100").await;
    assert_ne!(after_import, after_reset);
    let stale = call(
        &app,
        &token,
        "PATCH /movies/100",
        Some(&after_reset),
        merge("{}"),
    )
    .await;
    json_body(stale, 412, PROBLEM).await;

    // POSTs racing an import of the ids they would pick (2000 rows, skipping existing
    // ids) and plain-SQL inserts of explicit ids.
    let imported_ids = 102..=2101;
    let csv: String = std::iter::once("movie_id,title,released,rating\n".to_owned())
        .chain(
            imported_ids
                .clone()
                .map(|id| format!("{id},Imported {id},1999,6.0\n")),
        )
        .collect();
    let services = app.services.clone();
    let import = tokio::task::spawn_blocking(move || {
        services
            .movies
            .import_csv(csv.as_bytes(), OnExisting::Skip)
            .unwrap()
    });
    let mut posts = JoinSet::new();
    for i in 0..30 {
        let request = write(
            &app,
            &token,
            Method::POST,
            "/movies/",
            None,
            Some((JSON, movie(&format!("Posted {i}"), 2002, 6.5))),
        );
        posts.spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 3)).await;
            request.send().await.unwrap()
        });
    }
    // One statement, so its ids appear together: a POST after it picks above them all.
    let plain_inserts = tokio::task::spawn_blocking({
        let sql = sql.clone();
        move || {
            let rows: Vec<String> = (5000..5005)
                .map(|id| format!("({id}, 'Plain {id}', 2003, 5.5)"))
                .collect();
            sql.run(&format!(
                "INSERT INTO movies (movie_id, title, released, rating) VALUES {}",
                rows.join(", ")
            ))
            .unwrap()
            .unwrap();
        }
    });
    let mut posted = Vec::new();
    while let Some(response) = posts.join_next().await {
        let response = response.unwrap();
        let location = response.headers().get("location").cloned();
        let body = json_body(response, 201, JSON).await;
        assert_eq!(
            location.unwrap(),
            format!("/movies/{}", body["movie_id"]).as_str()
        );
        posted.push(body);
    }
    let counts = import.await.unwrap();
    plain_inserts.await.unwrap();
    let ids: std::collections::BTreeSet<i64> = posted
        .iter()
        .map(|m| m["movie_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 30, "no two POSTs got one id");
    for taken in [100, 101, 5000, 5001, 5002, 5003, 5004] {
        assert!(!ids.contains(&taken), "{taken} was taken before");
    }
    // Every posted movie is still the one posted: the import skipped its ids.
    for movie in &posted {
        let path = format!("/movies/{}", movie["movie_id"]);
        assert_eq!(
            &json_body(app.get_authed(&path, &token).await, 200, JSON).await,
            movie
        );
    }
    let skipped = ids.iter().filter(|id| imported_ids.contains(*id)).count();
    assert_eq!((counts.inserted, counts.skipped), (2000 - skipped, skipped));
    assert_eq!(counts.updated, 0);
    // And the next POST still goes past every id in the table.
    let largest = ids.iter().max().copied().unwrap().max(5004);
    let next = call(
        &app,
        &token,
        "POST /movies/",
        None,
        json_of(movie("Last", 2004, 5.0)),
    )
    .await;
    assert_eq!(
        next.headers()["location"].to_str().unwrap(),
        format!("/movies/{}", largest + 1)
    );
}
both_backends!(ids_and_versions_agree_with_other_writers);

/// The database's constraints hold the same limits as the service's rules, and a
/// violation that gets past the service is a 422 naming the field, never a 500.
async fn database_constraints_match_the_rules(db: TestDb) {
    let (app, token) = app_with_editor(db).await;
    let sql = PlainSql::of(&app);
    let postgres = sql.postgres;
    let insert = |id: i64, title: &str, released: i64, rating: &str| {
        sql.run(&format!(
            "INSERT INTO movies (movie_id, title, released, rating) VALUES ({id}, {title}, {released}, {rating})"
        ))
    };
    let Some(first) = insert(200, &format!("'{}'", "é".repeat(500)), 1800, "0") else {
        return;
    };
    first.unwrap();
    insert(201, "'A'", 3000, "10").unwrap().unwrap();
    let control = if postgres {
        "'a' || chr(7)"
    } else {
        "'a' || char(7)"
    };
    let c1 = if postgres {
        "'a' || chr(133)"
    } else {
        "'a' || char(133)"
    };
    let mut refused = vec![
        (format!("'{}'", "a".repeat(501)), 2000, "5"),
        ("''".to_owned(), 2000, "5"),
        (control.to_owned(), 2000, "5"),
        (c1.to_owned(), 2000, "5"),
        ("'A'".to_owned(), 1799, "5"),
        ("'A'".to_owned(), 3001, "5"),
        ("'A'".to_owned(), 2000, "-0.1"),
        ("'A'".to_owned(), 2000, "10.1"),
    ];
    if !postgres {
        // PostgreSQL's NUMERIC(3, 1) rounds a second decimal away instead.
        refused.push(("'A'".to_owned(), 2000, "9.25"));
        refused.push(("'A'".to_owned(), 2000, "'abc'"));
    }
    for (title, released, rating) in &refused {
        let result = insert(202, title, *released, rating).unwrap();
        assert!(result.is_err(), "accepted {title} {released} {rating}");
    }

    // A constraint the service does not know about: the database's refusal is a 422 that
    // names the field (the constraint's name says which), for inserts and updates alike.
    sql.run(
        "ALTER TABLE movies ADD COLUMN probe INTEGER \
         CONSTRAINT movies_title_probe_check CHECK (title <> 'Forbidden')",
    )
    .unwrap()
    .unwrap();
    let created = call(
        &app,
        &token,
        "POST /movies/",
        None,
        json_of(movie("Forbidden", 2000, 5.0)),
    )
    .await;
    assert_eq!(refused_fields(created).await, ["title"]);
    let etag = current_etag(&app, &token, "/movies/1").await;
    let patched = call(
        &app,
        &token,
        "PATCH /movies/1",
        Some(&etag),
        merge(r#"{"title": "Forbidden"}"#),
    )
    .await;
    assert_eq!(refused_fields(patched).await, ["title"]);
    assert_eq!(current_etag(&app, &token, "/movies/1").await, etag);
    let created = call(
        &app,
        &token,
        "POST /movies/",
        None,
        json_of(movie("Allowed", 2000, 5.0)),
    )
    .await;
    assert_eq!(created.status(), 201);
}
both_backends!(database_constraints_match_the_rules);

async fn cors_allows_conditional_writes(db: TestDb) {
    let app = spawn_app_with_server(db, |s| {
        s.cors_allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    app.import_sample().await;
    let token = editor_token(&app).await;
    for method in ["PUT", "PATCH", "DELETE"] {
        let preflight = app
            .client
            .request(Method::OPTIONS, app.url("/movies/1"))
            .header("origin", "https://app.example")
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "authorization, content-type, if-match",
            )
            .send()
            .await
            .unwrap();
        assert!(
            preflight.status().is_success(),
            "{method}: {}",
            preflight.status()
        );
        let allowed = preflight.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(allowed.contains(method), "{allowed}");
        let headers = preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase();
        assert!(headers.contains("if-match"), "{headers}");
    }
    let created = write(
        &app,
        &token,
        Method::POST,
        "/movies/",
        None,
        Some((JSON, movie("Cross-origin", 2020, 7.0))),
    )
    .header("origin", "https://app.example")
    .send()
    .await
    .unwrap();
    assert_eq!(
        created.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let exposed = created.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for header in ["etag", "location"] {
        assert!(exposed.contains(header), "{header} not in {exposed}");
    }
    json_body(created, 201, JSON).await;
}
both_backends!(cors_allows_conditional_writes);

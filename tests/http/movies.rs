use serde_json::json;

use crate::support::TestDb;
use crate::{TestApp, both_backends, json_body, spawn_app, spawn_app_with};

async fn app_with_sample(db: TestDb) -> (TestApp, String) {
    let app = spawn_app(db).await;
    app.import_sample().await;
    let token = app.login_new_user("movies@example.com").await;
    (app, token)
}

async fn both_id_routes_return_exact_ratings(db: TestDb) {
    let (app, token) = app_with_sample(db).await;
    let expected = json!({"movie_id": 1, "title": "The Shawshank Redemption", "released": 1994, "rating": 9.2});
    let by_query = json_body(
        app.get_authed("/movies/?movie_id=1", &token).await,
        200,
        "application/json",
    )
    .await;
    let by_path = json_body(
        app.get_authed("/movies/1", &token).await,
        200,
        "application/json",
    )
    .await;
    assert_eq!(by_query, expected);
    assert_eq!(by_path, expected);
    // Both routes tag the movie with the same strong ETag; the listing has its own.
    let etags: Vec<String> = {
        let mut etags = Vec::new();
        for path in ["/movies/?movie_id=1", "/movies/1"] {
            let response = app.get_authed(path, &token).await;
            etags.push(response.headers()["etag"].to_str().unwrap().to_owned());
        }
        etags
    };
    assert_eq!(etags[0], etags[1]);
    assert!(
        etags[0].starts_with('"') && !etags[0].starts_with("W/"),
        "{}",
        etags[0]
    );
    let listing = app
        .get_authed("/movies/new?year=1990&rating=9", &token)
        .await;
    let listing_etag = listing.headers()["etag"].to_str().unwrap();
    assert!(listing_etag.starts_with("W/\"g"), "{listing_etag}");
    // The raw text must say 9.2, not 9.199999….
    let raw = app
        .get_authed("/movies/2", &token)
        .await
        .text()
        .await
        .unwrap();
    assert!(raw.contains(r#""rating":9.2"#), "{raw}");

    for missing in [
        "/movies/?movie_id=9999",
        "/movies/9999",
        "/movies/99999999999",
    ] {
        let body = json_body(
            app.get_authed(missing, &token).await,
            404,
            "application/problem+json",
        )
        .await;
        assert_eq!(body["status"], 404);
    }
    // Every movie route is behind the guard.
    for path in [
        "/movies/?movie_id=1",
        "/movies/1",
        "/movies/new?year=1990&rating=9",
    ] {
        assert_eq!(
            app.client.get(app.url(path)).send().await.unwrap().status(),
            401,
            "{path}"
        );
    }
}
both_backends!(both_id_routes_return_exact_ratings);

async fn new_movies_are_filtered_and_ordered(db: TestDb) {
    let (app, token) = app_with_sample(db).await;
    let response = app
        .get_authed("/movies/new?year=1990&rating=9", &token)
        .await;
    assert!(!response.headers().contains_key("link"));
    let body = json_body(response, 200, "application/json").await;
    let ids: Vec<i64> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["movie_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 3, 6, 7]);
    for movie in body.as_array().unwrap() {
        assert!(movie["released"].as_i64().unwrap() >= 1990);
        assert!(movie["rating"].as_f64().unwrap() >= 9.0);
    }
    // Edges: equal year and equal rating are included.
    let body = json_body(
        app.get_authed("/movies/new?year=2008&rating=9.0", &token)
            .await,
        200,
        "application/json",
    )
    .await;
    assert_eq!(
        body,
        json!([{"movie_id": 3, "title": "The Dark Knight", "released": 2008, "rating": 9.0}])
    );
    let body = json_body(
        app.get_authed("/movies/new?year=2030&rating=0", &token)
            .await,
        200,
        "application/json",
    )
    .await;
    assert_eq!(body, json!([]));
    let body = json_body(
        app.get_authed("/movies/new?year=0&rating=10", &token).await,
        200,
        "application/json",
    )
    .await;
    assert_eq!(body, json!([]));
}
both_backends!(new_movies_are_filtered_and_ordered);

async fn new_movies_are_paged_with_link_next(db: TestDb) {
    let (app, token) = app_with_sample(db).await;
    let mut path = "/movies/new?year=1990&rating=8.5&limit=5".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let response = app.get_authed(&path, &token).await;
        let next = response
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_owned());
        let body = json_body(response, 200, "application/json").await;
        let page: Vec<i64> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["movie_id"].as_i64().unwrap())
            .collect();
        assert!(page.len() <= 5);
        seen.extend(page);
        pages += 1;
        let Some(link) = next else { break };
        assert!(link.ends_with(r#">; rel="next""#), "{link}");
        assert!(
            link.contains("&after=") && !link.contains("offset"),
            "{link}"
        );
        path = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_owned();
    }
    let all = json_body(
        app.get_authed("/movies/new?year=1990&rating=8.5&limit=1000", &token)
            .await,
        200,
        "application/json",
    )
    .await;
    let all: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["movie_id"].as_i64().unwrap())
        .collect();
    assert_eq!(seen, all);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "ordered by movie_id");
    assert_eq!(pages, all.len().div_ceil(5));
}
both_backends!(new_movies_are_paged_with_link_next);

async fn parameter_errors_are_422_naming_the_parameter(db: TestDb) {
    let (app, token) = app_with_sample(db).await;
    let cases = [
        ("/movies/new?rating=9", "year"),
        ("/movies/new?year=1990", "rating"),
        ("/movies/new?year=abc&rating=9", "year"),
        ("/movies/new?year=1990&rating=abc", "rating"),
        ("/movies/new?year=1990&rating=NaN", "rating"),
        ("/movies/new?year=1990&rating=inf", "rating"),
        ("/movies/new?year=1990&rating=11", "rating"),
        ("/movies/new?year=1990&rating=-1", "rating"),
        ("/movies/new?year=99999999999999999999&rating=9", "year"),
        ("/movies/new?year=-5&rating=9", "year"),
        ("/movies/new?year=1990&rating=9&limit=-1", "limit"),
        ("/movies/new?year=1990&rating=9&limit=0", "limit"),
        ("/movies/new?year=1990&rating=9&limit=1001", "limit"),
        ("/movies/new?year=1990&rating=9&offset=-1", "offset"),
        ("/movies/new?year=1990&rating=9&offset=10001", "offset"),
        ("/movies/new?year=1990&rating=9&after=-1", "after"),
        ("/movies/new?year=1990&rating=9&after=1.5", "after"),
        ("/movies/new?year=1990&rating=9&after=abc", "after"),
        ("/movies/new?year=1990&rating=9&after=", "after"),
        ("/movies/new?year=1990&rating=9&after=2147483648", "after"),
        ("/movies/new?year=1990&rating=9&after=5&offset=0", "after"),
        ("/movies/new?year=1990&year=1991&rating=9", "year"),
        ("/movies/?movie_id=abc", "movie_id"),
        ("/movies/", "movie_id"),
        ("/movies/abc", "movie_id"),
        ("/movies/1.5", "movie_id"),
    ];
    for (path, field) in cases {
        let body = json_body(
            app.get_authed(path, &token).await,
            422,
            "application/problem+json",
        )
        .await;
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{path}: {body}");
        assert_eq!(body["status"], 422);
    }
}
both_backends!(parameter_errors_are_422_naming_the_parameter);

/// The filter's edges at the service level: equal year and rating are included, 0 and 10
/// are valid ratings at both ends, and an empty result is an empty page.
async fn service_filter_edges(db: TestDb) {
    use myapi_services::movies::{NewMoviesQuery, OnExisting};
    let app = spawn_app(db).await;
    let services = app.services.clone();
    let ids = tokio::task::spawn_blocking(move || {
        let csv = "movie_id,title,released,rating\n1,Zero,2000,0\n2,Ten,2000,10\n3,Nine Two,1994,9.2\n4,Old Ten,1999,10.0\n";
        services.movies.import_csv(csv.as_bytes(), OnExisting::Fail).unwrap();
        let limit = services.movies.settings().default_page_size;
        let ids = |year: i32, rating: f64| -> Vec<i32> {
            let query = NewMoviesQuery::new(year, rating, limit, 0, 0).unwrap();
            services.movies.released_since(&query).unwrap().movies.iter().map(|m| m.movie_id).collect()
        };
        (ids(2000, 10.0), ids(2000, 0.0), ids(1994, 9.2), ids(1999, 10.0), ids(2001, 0.0), ids(0, 9.3))
    })
    .await
    .unwrap();
    assert_eq!(ids.0, [2], "rating 10 includes exactly 10.0");
    assert_eq!(ids.1, [1, 2], "rating 0 includes 0.0; equal year included");
    assert_eq!(
        ids.2,
        [2, 3, 4],
        "equal rating 9.2 and equal year 1994 included"
    );
    assert_eq!(ids.3, [2, 4]);
    assert!(ids.4.is_empty(), "no movie after 2000");
    assert_eq!(ids.5, [2, 4]);
}
both_backends!(service_filter_edges);

/// The page's movie ids and the path its `Link: rel="next"` names, if any.
async fn page(app: &TestApp, token: &str, path: &str) -> (Vec<i64>, Option<String>) {
    let response = app.get_authed(path, token).await;
    let next = response.headers().get("link").map(|link| {
        let link = link.to_str().unwrap();
        assert!(
            link.starts_with("</movies/new?") && link.ends_with(r#">; rel="next""#),
            "{link}"
        );
        link.trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_owned()
    });
    let body = json_body(response, 200, "application/json").await;
    let ids = body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["movie_id"].as_i64().unwrap())
        .collect();
    (ids, next)
}

async fn cursor_pages_chain_to_the_end(db: TestDb) {
    let (app, token) = app_with_sample(db).await;
    let (all, none) = page(&app, &token, "/movies/new?year=0&rating=0&limit=1000").await;
    assert!(none.is_none());
    assert!(all.len() > 20, "{all:?}");
    for limit in [1, 3, 7] {
        // From the start with the cursor, and from an offset page: both continue with `after`.
        for first in [
            format!("/movies/new?year=0&rating=0&limit={limit}&after=0"),
            format!("/movies/new?year=0&rating=0&limit={limit}&offset=0"),
        ] {
            let mut path = Some(first);
            let mut seen = Vec::new();
            while let Some(current) = path {
                let (ids, next) = page(&app, &token, &current).await;
                assert!(!ids.is_empty() && ids.len() <= limit, "{current}: {ids:?}");
                if let Some(next) = &next {
                    assert!(ids.len() == limit, "{current}: a short page has no next");
                    let last = ids.last().unwrap();
                    assert!(next.ends_with(&format!("&after={last}")), "{next}");
                    assert!(!next.contains("offset"), "{next}");
                }
                seen.extend(ids);
                path = next;
            }
            assert_eq!(seen, all, "limit {limit}: no duplicates, no gaps, in order");
        }
    }
    // A filter pages through its own matches only.
    let (filtered, _) = page(&app, &token, "/movies/new?year=1990&rating=8.5&limit=1000").await;
    let mut path = Some("/movies/new?year=1990&rating=8.5&limit=2".to_owned());
    let mut seen = Vec::new();
    while let Some(current) = path {
        let (ids, next) = page(&app, &token, &current).await;
        assert!(
            current.contains("year=1990&rating=8.5&limit=2"),
            "{current}"
        );
        seen.extend(ids);
        path = next;
    }
    assert_eq!(seen, filtered);
    // A page after an id holds exactly the ids above it; past the last id it is empty, with
    // no Link.
    let (ids, _) = page(
        &app,
        &token,
        &format!("/movies/new?year=0&rating=0&after={}", all[4]),
    )
    .await;
    assert_eq!(ids, all[5..]);
    let last = *all.last().unwrap();
    for after in [last, last + 1, i64::from(i32::MAX)] {
        let (ids, next) = page(
            &app,
            &token,
            &format!("/movies/new?year=0&rating=0&after={after}"),
        )
        .await;
        assert!(
            ids.is_empty() && next.is_none(),
            "after={after}: {ids:?} {next:?}"
        );
    }
    // The page that ends exactly at the last movie has no Link either.
    let total = all.len();
    let (ids, next) = page(
        &app,
        &token,
        &format!("/movies/new?year=0&rating=0&limit={total}"),
    )
    .await;
    assert_eq!(ids.len(), total);
    assert!(next.is_none());
}
both_backends!(cursor_pages_chain_to_the_end);

async fn errors(app: &TestApp, token: &str, path: &str) -> Vec<(String, String)> {
    let body = json_body(
        app.get_authed(path, token).await,
        422,
        "application/problem+json",
    )
    .await;
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn offsets_are_capped_and_name_the_cursor(db: TestDb) {
    let (app, token) = app_with_sample(db).await;
    // The cap itself is accepted (here past the last movie: an empty page).
    let (ids, next) = page(&app, &token, "/movies/new?year=0&rating=0&offset=10000").await;
    assert!(ids.is_empty() && next.is_none());
    let found = errors(&app, &token, "/movies/new?year=0&rating=0&offset=10001").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "offset");
    assert!(
        found[0].1.contains("10000") && found[0].1.contains("after="),
        "{found:?}"
    );
    // Every offending field is listed, the combination too.
    let found = errors(
        &app,
        &token,
        "/movies/new?year=x&rating=0&limit=0&after=3&offset=99999",
    )
    .await;
    let fields: Vec<&str> = found.iter().map(|(field, _)| field.as_str()).collect();
    assert_eq!(fields, ["year", "limit", "after", "offset"], "{found:?}");
    let found = errors(
        &app,
        &token,
        "/movies/new?year=0&rating=0&after=-1&offset=-1",
    )
    .await;
    let fields: Vec<&str> = found.iter().map(|(field, _)| field.as_str()).collect();
    assert_eq!(fields, ["after", "offset"], "{found:?}");
}
both_backends!(offsets_are_capped_and_name_the_cursor);

/// `movies.max_offset` (`MYAPI_MOVIES__MAX_OFFSET`) moves the cap.
async fn max_offset_setting_moves_the_cap(db: TestDb) {
    let app = spawn_app_with(db, |settings| settings.movies.max_offset = 3).await;
    app.import_sample().await;
    let token = app.login_new_user("offsets@example.com").await;
    let (ids, next) = page(&app, &token, "/movies/new?year=0&rating=0&limit=2&offset=3").await;
    assert_eq!(ids.len(), 2);
    // The next page continues with the cursor, which the cap does not limit.
    let next = next.unwrap();
    assert!(next.contains("&after="), "{next}");
    let (more, _) = page(&app, &token, &next).await;
    assert!(more.first().unwrap() > ids.last().unwrap());
    let found = errors(&app, &token, "/movies/new?year=0&rating=0&offset=4").await;
    assert_eq!(found[0].0, "offset");
    assert!(
        found[0].1.contains("offset above 3") && found[0].1.contains("after="),
        "{found:?}"
    );
}
both_backends!(max_offset_setting_moves_the_cap);

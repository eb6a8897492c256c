use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::support::{Backend, TEST_TOKEN_KEY, TestDb, psql};
use crate::{TestApp, both_backends, json_body, spawn_app, spawn_app_configured, spawn_app_with};

const PASSWORD: &str = "correct-horse-battery";

async fn login_flow_and_users_me(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_user("Ada@Example.com", PASSWORD).await;
    let response = app
        .post_token(&[
            ("grant_type", "password"),
            ("username", "ada@example.com"),
            ("password", PASSWORD),
            ("scope", ""),
            ("client_id", "swagger"),
        ])
        .await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body = json_body(response, 200, "application/json").await;
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap();

    // The username is matched regardless of case and surrounding blanks; grant_type is optional.
    let again = app
        .post_token(&[("username", " ADA@example.com "), ("password", PASSWORD)])
        .await;
    assert_eq!(again.status(), 200);

    let me = app.get_authed("/users/me", token).await;
    assert_eq!(me.headers()["cache-control"], "no-store");
    let me = json_body(me, 200, "application/json").await;
    assert_eq!(
        me,
        json!({"user_id": me["user_id"], "name": "Test User", "email": "ada@example.com", "role": "reader", "email_verified": true})
    );
    assert!(me["user_id"].as_i64().unwrap() > 0);

    // The scheme name is case-insensitive.
    let lower = app
        .client
        .get(app.url("/users/me"))
        .header("Authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200);
}
both_backends!(login_flow_and_users_me);

async fn unknown_user_and_wrong_password_look_the_same(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_user("known@example.com", PASSWORD).await;
    let wrong = app
        .post_token(&[
            ("grant_type", "password"),
            ("username", "known@example.com"),
            ("password", "wrong-password"),
        ])
        .await;
    let unknown = app
        .post_token(&[
            ("grant_type", "password"),
            ("username", "nobody@example.com"),
            ("password", "wrong-password"),
        ])
        .await;
    let wrong = json_body(wrong, 400, "application/json").await;
    let unknown = json_body(unknown, 400, "application/json").await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"], "invalid_grant");
}
both_backends!(unknown_user_and_wrong_password_look_the_same);

async fn malformed_token_requests(db: TestDb) {
    let app = spawn_app(db).await;
    let cases: &[(&str, &str, &str)] = &[
        (
            "application/x-www-form-urlencoded",
            "password=x12345678",
            "invalid_request",
        ),
        (
            "application/x-www-form-urlencoded",
            "username=a%40b.co&password=",
            "invalid_request",
        ),
        (
            "application/x-www-form-urlencoded",
            "username=a%40b.co&username=c%40d.co&password=x12345678",
            "invalid_request",
        ),
        (
            "application/x-www-form-urlencoded",
            "username=a%40b.co&password=x12345678&grant_type=client_credentials",
            "unsupported_grant_type",
        ),
        (
            "application/x-www-form-urlencoded",
            "username=a%40b.co&password=x12345678&grant_type=",
            "invalid_request",
        ),
        (
            "application/json",
            r#"{"username":"a@b.co","password":"x12345678"}"#,
            "invalid_request",
        ),
        (
            "text/plain",
            "username=a%40b.co&password=x12345678",
            "invalid_request",
        ),
        (
            "application/x-www-form-urlencoded",
            "%%%%",
            "invalid_request",
        ),
    ];
    for (content_type, body, error) in cases {
        let response = app
            .client
            .post(app.url("/token"))
            .header("content-type", *content_type)
            .body(*body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["cache-control"], "no-store", "{body}");
        let json = json_body(response, 400, "application/json").await;
        assert_eq!(json["error"], *error, "{content_type} {body}");
        assert!(json["error_description"].is_string());
    }
    let no_content_type = app
        .client
        .post(app.url("/token"))
        .body("username=a&password=b")
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_body(no_content_type, 400, "application/json").await["error"],
        "invalid_request"
    );
    let oversized = app
        .client
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username=a&password={}", "x".repeat(64 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
}
both_backends!(malformed_token_requests);

fn sign(claims: &serde_json::Value, algorithm: Algorithm, key: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn bearer_guard_rejections(db: TestDb) {
    let app = spawn_app(db).await;
    let token = app.login_new_user("guard@example.com").await;
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&token)
        .unwrap()
        .claims;

    let missing = app.client.get(app.url("/users/me")).send().await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    json_body(missing, 401, "application/problem+json").await;
    let basic = app
        .client
        .get(app.url("/users/me"))
        .header("Authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.headers()["www-authenticate"], "Bearer");
    assert_eq!(basic.status(), 401);

    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 60);
    let mut wrong_issuer = claims.clone();
    wrong_issuer["iss"] = json!("someone-else");
    let mut wrong_audience = claims.clone();
    wrong_audience["aud"] = json!("another-deployment");
    let mut no_sub = claims.clone();
    no_sub.as_object_mut().unwrap().remove("sub");
    let bad_tokens = [
        "garbage".to_owned(),
        format!("{token}x"),
        sign(
            &claims,
            Algorithm::HS256,
            "another-key-another-key-another-key",
        ),
        sign(&expired, Algorithm::HS256, TEST_TOKEN_KEY),
        sign(&wrong_issuer, Algorithm::HS256, TEST_TOKEN_KEY),
        sign(&wrong_audience, Algorithm::HS256, TEST_TOKEN_KEY),
        sign(&no_sub, Algorithm::HS256, TEST_TOKEN_KEY),
        sign(&claims, Algorithm::HS512, TEST_TOKEN_KEY),
        format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&claims.to_string())
        ),
    ];
    for bad in &bad_tokens {
        let response = app.get_authed("/users/me", bad).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#,
            "{bad}"
        );
        let body = json_body(response, 401, "application/problem+json").await;
        assert_eq!(body["status"], 401);
    }
    assert_eq!(app.get_authed("/users/me", &token).await.status(), 200);
}
both_backends!(bearer_guard_rejections);

async fn password_change_and_deletion_revoke_tokens(db: TestDb) {
    let app = spawn_app_with(db, |s| s.auth.revocation_cache_ms = 200).await;
    let token = app.login_new_user("revoke@example.com").await;
    assert_eq!(app.get_authed("/users/me", &token).await.status(), 200);
    let services = app.services.clone();
    tokio::task::spawn_blocking(move || {
        services
            .auth
            .set_password("revoke@example.com", "a-new-password".into())
    })
    .await
    .unwrap()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get_authed("/users/me", &token).await.status(), 401);

    let new_token = app
        .post_token(&[
            ("username", "revoke@example.com"),
            ("password", "a-new-password"),
        ])
        .await;
    let new_token = json_body(new_token, 200, "application/json").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.get_authed("/users/me", &new_token).await.status(), 200);
    let services = app.services.clone();
    tokio::task::spawn_blocking(move || services.auth.delete_user("revoke@example.com"))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get_authed("/users/me", &new_token).await.status(), 401);
}
both_backends!(password_change_and_deletion_revoke_tokens);

async fn failed_logins_are_throttled(db: TestDb) {
    let app = spawn_app_with(db, |s| {
        s.auth.ip_failure_burst = 3.try_into().unwrap();
        s.auth.ip_failure_refill_secs = 60;
    })
    .await;
    app.create_user("victim@example.com", PASSWORD).await;
    for _ in 0..3 {
        let r = app
            .post_token(&[
                ("username", "victim@example.com"),
                ("password", "not-the-password"),
            ])
            .await;
        assert_eq!(r.status(), 400);
    }
    let throttled = app
        .post_token(&[("username", "victim@example.com"), ("password", PASSWORD)])
        .await;
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let body = json_body(throttled, 429, "application/json").await;
    assert!(body["error"].is_string());
}
both_backends!(failed_logins_are_throttled);

async fn saturated_hashing_answers_503_at_once(db: TestDb) {
    let app = spawn_app_with(db, |s| {
        s.auth.hash_concurrency = 1.into();
        s.auth.hash_queue = 0;
        s.auth.ip_failure_burst = 1000.try_into().unwrap();
    })
    .await;
    let attempts = (0..12).map(|i| {
        let client = app.client.clone();
        let url = app.url("/token");
        async move {
            let form = [
                ("username", format!("user{i}@example.com")),
                ("password", "whatever-password".into()),
            ];
            client.post(url).form(&form).send().await.unwrap()
        }
    });
    let responses = futures_join_all(attempts).await;
    let busy: Vec<_> = responses.iter().filter(|r| r.status() == 503).collect();
    assert!(!busy.is_empty(), "expected some 503s");
    assert!(busy.iter().all(|r| r.headers().contains_key("retry-after")));
    assert!(
        responses
            .iter()
            .all(|r| r.status() == 503 || r.status() == 400)
    );
}
both_backends!(saturated_hashing_answers_503_at_once);

/// Runs futures concurrently on the test runtime.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

/// Creates the reader `old@example.com` with a hash of older parameters: `memory_kib` and
/// one iteration, as an instance configured so would have.
async fn create_with_old_hash(app: &TestApp, memory_kib: u32) {
    let mut weak = app.settings.clone();
    weak.auth.argon2_memory_kib = memory_kib;
    weak.auth.argon2_iterations = 1;
    tokio::task::spawn_blocking(move || {
        myapi_services::Services::build(&weak, false)
            .unwrap()
            .auth
            .create_user(
                "Old",
                "old@example.com",
                PASSWORD.into(),
                myapi_services::auth::Role::Reader,
            )
    })
    .await
    .unwrap()
    .unwrap();
}

async fn outdated_hashes_are_upgraded_on_login(db: TestDb) {
    let app = spawn_app(db).await;
    create_with_old_hash(&app, 8192).await;
    let stored = || {
        let out = std::process::Command::new("psql")
            .args([
                app.db.dsn.as_str(),
                "-Atc",
                "SELECT hashed_password FROM myapi.users WHERE email = 'old@example.com'",
            ])
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let on_postgres = app.services.database.backend_name() == "postgres";
    if on_postgres {
        assert!(
            stored()
                .unwrap()
                .starts_with("$argon2id$v=19$m=8192,t=1,p=1$")
        );
    }
    let login = app
        .post_token(&[("username", "old@example.com"), ("password", PASSWORD)])
        .await;
    assert_eq!(login.status(), 200);
    if on_postgres {
        assert!(
            stored()
                .unwrap()
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "hash upgraded"
        );
    }
    // The upgraded hash still verifies.
    let again = app
        .post_token(&[("username", "old@example.com"), ("password", PASSWORD)])
        .await;
    assert_eq!(again.status(), 200);
}
both_backends!(outdated_hashes_are_upgraded_on_login);

/// A token names its user's incarnation: a database reset (here, a fresh database under
/// the same signing key) whose new user gets the same id does not accept the old token.
async fn tokens_do_not_survive_a_database_reset(db: TestDb) {
    let backend = if db.dsn.starts_with("postgres") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let before = spawn_app(db).await;
    let token = before.login_new_user("reset@example.com").await;
    let after = spawn_app(TestDb::new(backend).unwrap()).await;
    after.create_user("reset@example.com", PASSWORD).await;
    let me = json_body(
        after
            .get_authed(
                "/users/me",
                &after.login_new_user("other@example.com").await,
            )
            .await,
        200,
        "application/json",
    )
    .await;
    assert_eq!(
        me["user_id"], 2,
        "ids restart: the first user got id 1 again"
    );
    let stale = after.get_authed("/users/me", &token).await;
    assert_eq!(
        stale.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    assert_eq!(stale.status(), 401);
}
both_backends!(tokens_do_not_survive_a_database_reset);

/// Input no database should see is refused before any work: 400 invalid_request, never a
/// 500, on both backends.
async fn control_characters_are_invalid_requests(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_user("ada@example.com", PASSWORD).await;
    for (username, password) in [
        ("a\0b@example.com", PASSWORD),
        ("\0ada@example.com", PASSWORD),
        ("ada@example.com\u{1}", PASSWORD),
        ("ada@example.com", "correct-horse\0battery"),
    ] {
        let response = app
            .post_token(&[("username", username), ("password", password)])
            .await;
        let body = json_body(response, 400, "application/json").await;
        assert_eq!(body["error"], "invalid_request", "{username:?}");
    }
    // A display-name form breaks the email rule: it is answered like an unknown user.
    let response = app
        .post_token(&[
            ("username", "Ada <ada@example.com>"),
            ("password", PASSWORD),
        ])
        .await;
    assert_eq!(
        json_body(response, 400, "application/json").await["error"],
        "invalid_grant"
    );
    // And the pool is none the worse: the next login works at once.
    let response = app
        .post_token(&[("username", "ada@example.com"), ("password", PASSWORD)])
        .await;
    assert_eq!(response.status(), 200);
}
both_backends!(control_characters_are_invalid_requests);

/// 100 simultaneous wrong guesses for one account: the budget is reserved before each
/// guess waits for a hashing thread, so at most the account budget are checked.
async fn concurrent_guesses_stay_within_the_account_budget(db: TestDb) {
    let app = spawn_app_with(db, |s| {
        s.auth.ip_failure_burst = 1000.try_into().unwrap();
    })
    .await;
    app.create_user("target@example.com", PASSWORD).await;
    let burst = u64::from(app.settings.auth.account_failure_burst.get());
    let guesses = (0..100).map(|i| {
        let (client, url) = (app.client.clone(), app.url("/token"));
        async move {
            let form = [
                ("username", "target@example.com".to_owned()),
                ("password", format!("wrong-guess-{i}")),
            ];
            let response = client.post(url).form(&form).send().await.unwrap();
            let retry_after = response.headers().contains_key("retry-after");
            (response.status().as_u16(), retry_after)
        }
    });
    let answers = futures_join_all(guesses).await;
    let checked = answers.iter().filter(|(status, _)| *status == 400).count() as u64;
    let throttled = answers
        .iter()
        .filter(|(status, retry_after)| *status == 429 && *retry_after)
        .count() as u64;
    eprintln!("100 concurrent wrong guesses: {checked} checked, {throttled} throttled");
    assert!(
        checked <= burst,
        "{checked} guesses checked, budget {burst}"
    );
    assert_eq!(checked + throttled, 100, "{answers:?}");
}
both_backends!(concurrent_guesses_stay_within_the_account_budget);

#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let dir = db.dir.path().to_owned();
    let app = spawn_app(db).await;
    app.create_user("private@example.com", PASSWORD).await;
    for name in ["test.db", "test.db-wal", "test.db-shm"] {
        let mode = std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
    }
}

/// A network the owner logged in from passes their throttled account, until the password
/// changes: trust is keyed by the user's security stamp, which the change replaces.
async fn a_password_change_forgets_trusted_networks(db: TestDb) {
    let app = spawn_app_configured(
        db,
        |server| server.trusted_proxies = "127.0.0.1".parse().unwrap(),
        |settings| {
            settings.auth.ip_failure_burst = 1000.try_into().unwrap();
            settings.auth.account_failure_burst = 3.try_into().unwrap();
            settings.auth.account_failure_refill_secs = 600;
        },
    )
    .await;
    app.create_user("owner@example.com", PASSWORD).await;
    async fn login(app: &TestApp, client: &str, password: &str) -> u16 {
        let form = [("username", "owner@example.com"), ("password", password)];
        let request = app.client.post(app.url("/token")).form(&form);
        let response = request
            .header("X-Forwarded-For", client)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    }
    let (owner, attacker) = ("203.0.113.1", "198.51.100.9");
    assert_eq!(login(&app, owner, PASSWORD).await, 200);
    for _ in 0..3 {
        assert_eq!(login(&app, attacker, "wrong-guess").await, 400);
    }
    assert_eq!(
        login(&app, attacker, PASSWORD).await,
        429,
        "the account is throttled"
    );
    assert_eq!(
        login(&app, owner, PASSWORD).await,
        200,
        "the owner's network passes"
    );

    let services = app.services.clone();
    tokio::task::spawn_blocking(move || {
        services
            .auth
            .set_password("owner@example.com", "a-new-password".into())
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        login(&app, owner, "a-new-password").await,
        429,
        "after the change the owner's network is a stranger again"
    );
}
both_backends!(a_password_change_forgets_trusted_networks);

/// An account whose hash predates a parameter change (cheaper) must answer a wrong
/// password about as fast as an unknown account does: a difference would tell which
/// accounts exist. The median of several pairs' ratios (a pair is tried back to back, so
/// load from other tests weighs on both alike), against a ratio of 20 unpadded.
async fn outdated_hashes_answer_as_slowly_as_unknown_accounts(db: TestDb) {
    let app = spawn_app_with(db, |settings| {
        settings.auth.argon2_iterations = 4;
        settings.auth.account_failure_burst = 100.try_into().unwrap();
        settings.auth.ip_failure_burst = 100.try_into().unwrap();
    })
    .await;
    create_with_old_hash(&app, 1024).await;
    let wrong_password = |username: &'static str| {
        let app = &app;
        async move {
            let started = std::time::Instant::now();
            let response = app
                .post_token(&[("username", username), ("password", "not-the-password")])
                .await;
            assert_eq!(response.status(), 400);
            started.elapsed().as_secs_f64() * 1000.0
        }
    };
    // Current-parameter checks first, which the server's moving median starts from.
    for _ in 0..3 {
        wrong_password("nobody@example.com").await;
    }
    let mut pairs = Vec::new();
    for pair in 0..11 {
        // Either kind first in turn: the first of two answers can differ from the second.
        let (old, unknown) = if pair % 2 == 0 {
            let old = wrong_password("old@example.com").await;
            (old, wrong_password("nobody@example.com").await)
        } else {
            let unknown = wrong_password("nobody@example.com").await;
            (wrong_password("old@example.com").await, unknown)
        };
        pairs.push((old, unknown));
    }
    let mut ratios: Vec<f64> = pairs.iter().map(|(old, unknown)| old / unknown).collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    println!("wrong password, outdated hash / unknown account: median {ratio:.2} of {pairs:.1?}");
    assert!(
        (0.75..=1.33).contains(&ratio),
        "outdated hash / unknown account: median {ratio:.2} of {pairs:.1?}"
    );
}
both_backends!(outdated_hashes_answer_as_slowly_as_unknown_accounts);

/// RFC 8414 metadata: every endpoint under `auth.issuer`, which is the `iss` of the tokens;
/// tokens with the `iss` of before `auth.issuer` (HS256, `myapi`) still verify.
async fn the_metadata_names_the_issuer_tokens_carry(db: TestDb) {
    let app = spawn_app(db).await;
    let issuer = "https://api.example.com/v1";
    let address = app
        .start_instance(|s| s.auth.issuer = issuer.to_owned())
        .await;
    let response = app
        .client
        .get(format!("{address}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let metadata = json_body(response, 200, "application/json").await;
    assert_eq!(
        metadata,
        json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/token"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "response_types_supported": [],
            "grant_types_supported": ["password", "refresh_token"],
            "scopes_supported": myapi_services::auth::SCOPES,
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "introspection_endpoint": format!("{issuer}/introspect"),
            "introspection_endpoint_auth_methods_supported": ["bearer"],
            "service_documentation": format!("{issuer}/docs/"),
        })
    );
    app.create_user("issuer@example.com", "correct-horse-battery")
        .await;
    let response = app
        .client
        .post(format!("{address}/token"))
        .form(&[
            ("username", "issuer@example.com"),
            ("password", "correct-horse-battery"),
        ])
        .send()
        .await
        .unwrap();
    let token = json_body(response, 200, "application/json").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&token)
        .unwrap()
        .claims;
    assert_eq!(claims["iss"], issuer);
    // The default instance (issuer http://127.0.0.1:8000) refuses it; a token as issued
    // before `auth.issuer` (iss `myapi`) passes both.
    assert_eq!(app.get_authed("/users/me", &token).await.status(), 401);
    let mut legacy_claims = claims.clone();
    legacy_claims["iss"] = "myapi".into();
    let legacy = jsonwebtoken::encode(
        &jsonwebtoken::decode_header(&token).unwrap(),
        &legacy_claims,
        &EncodingKey::from_secret(TEST_TOKEN_KEY.as_bytes()),
    )
    .unwrap();
    for base in [&app.address, &address] {
        let response = app
            .client
            .get(format!("{base}/users/me"))
            .bearer_auth(&legacy)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{base}");
    }
}
both_backends!(the_metadata_names_the_issuer_tokens_carry);

fn claims_of(token: &str) -> serde_json::Value {
    jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
        .unwrap()
        .claims
}

/// RFC 9068 claims: `client_id` as sent to `/token` (else `auth.default_client_id`), and
/// `sid`, the login's refresh family, both kept across refreshes; a refresh naming another
/// client is refused, and `auth.client_ids`, when set, limits the clients.
async fn tokens_name_their_client_and_session(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_user("client@example.com", "correct-horse-battery")
        .await;
    let login = |client_id: Option<&'static str>| {
        let mut form = vec![
            ("username", "client@example.com"),
            ("password", "correct-horse-battery"),
        ];
        form.extend(client_id.map(|id| ("client_id", id)));
        app.client.post(app.url("/token")).form(&form).send()
    };
    let response = login(None).await.unwrap();
    let first = json_body(response, 200, "application/json").await;
    let claims = claims_of(first["access_token"].as_str().unwrap());
    assert_eq!(claims["client_id"], "myapi");
    let response = login(Some("mobile-app")).await.unwrap();
    let tokens = json_body(response, 200, "application/json").await;
    let claims = claims_of(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["client_id"], "mobile-app");
    let sid = claims["sid"].as_str().unwrap().to_owned();
    assert_ne!(
        claims_of(first["access_token"].as_str().unwrap())["sid"],
        sid.as_str()
    );

    let refresh = |token: String, client_id: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", token),
        ];
        form.extend(client_id.map(|id| ("client_id", id.to_owned())));
        app.client.post(app.url("/token")).form(&form).send()
    };
    let token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refused = refresh(token.clone(), Some("another-app")).await.unwrap();
    let body = json_body(refused, 400, "application/json").await;
    assert_eq!(body["error"], "invalid_grant");
    // Refused before use: the token still refreshes, for its own client or naming none.
    let refreshed = refresh(token, Some("mobile-app")).await.unwrap();
    let refreshed = json_body(refreshed, 200, "application/json").await;
    let claims = claims_of(refreshed["access_token"].as_str().unwrap());
    assert_eq!(
        (claims["client_id"].as_str(), claims["sid"].as_str()),
        (Some("mobile-app"), Some(sid.as_str()))
    );
    let again = refresh(
        refreshed["refresh_token"].as_str().unwrap().to_owned(),
        None,
    )
    .await
    .unwrap();
    let again = json_body(again, 200, "application/json").await;
    assert_eq!(
        claims_of(again["access_token"].as_str().unwrap())["sid"],
        sid.as_str()
    );

    let response = login(Some("not a client")).await.unwrap();
    assert_eq!(
        json_body(response, 400, "application/json").await["error"],
        "invalid_request"
    );
    let listed = app
        .start_instance(|s| {
            s.auth.client_ids = vec!["web".into(), "myapi".into()];
        })
        .await;
    let response = app
        .client
        .post(format!("{listed}/token"))
        .form(&[
            ("username", "client@example.com"),
            ("password", "correct-horse-battery"),
            ("client_id", "mobile-app"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_body(response, 400, "application/json").await["error"],
        "invalid_client"
    );

    // RFC 6749 §2.3.1: the client_id may come in HTTP Basic, form-urlencoded, with a
    // secret that is not checked (clients are public); the body may repeat it, not
    // contradict it.
    let basic = |username: &str, form: &[(&str, &str)]| {
        app.client
            .post(app.url("/token"))
            .basic_auth(username, Some("any-secret"))
            .form(form)
            .send()
    };
    let credentials = [
        ("username", "client@example.com"),
        ("password", "correct-horse-battery"),
    ];
    for form in [
        credentials.to_vec(),
        [&credentials[..], &[("client_id", "web.app")]].concat(),
    ] {
        let response = basic("web%2Eapp", &form).await.unwrap();
        let tokens = json_body(response, 200, "application/json").await;
        assert_eq!(
            claims_of(tokens["access_token"].as_str().unwrap())["client_id"],
            "web.app"
        );
    }
    let contradicted = [&credentials[..], &[("client_id", "other")]].concat();
    let response = basic("web.app", &contradicted).await.unwrap();
    assert_eq!(
        json_body(response, 400, "application/json").await["error"],
        "invalid_request"
    );
}
both_backends!(tokens_name_their_client_and_session);

/// A login from before clients were kept (its family's `client_id` empty, as the migration
/// leaves it) refreshes to the client the refresh names, or else the default. PostgreSQL
/// only: the rows are changed with `psql`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_from_before_clients_were_kept_refreshes() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let app = spawn_app(db).await;
    app.create_user("old-client@example.com", "correct-horse-battery")
        .await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let response = app
            .post_token(&[
                ("username", "old-client@example.com"),
                ("password", "correct-horse-battery"),
            ])
            .await;
        let body = json_body(response, 200, "application/json").await;
        sessions.push(body["refresh_token"].as_str().unwrap().to_owned());
    }
    psql(
        &app.db.dsn,
        "UPDATE myapi.refresh_families SET client_id = ''",
    );
    let refresh = |token: &str, client_id: Option<&str>| {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
        form.extend(client_id.map(|id| ("client_id", id)));
        let request = app.client.post(app.url("/token")).form(&form);
        async move { json_body(request.send().await.unwrap(), 200, "application/json").await }
    };
    let named = refresh(&sessions[0], Some("legacy-app")).await;
    let unnamed = refresh(&sessions[1], None).await;
    for (answer, client) in [(&named, "legacy-app"), (&unnamed, "myapi")] {
        let claims = claims_of(answer["access_token"].as_str().unwrap());
        assert_eq!(claims["client_id"], client, "{answer}");
    }
}

//! Malformed and malicious requests, table-driven over raw TCP: none may get a 5xx, every
//! routed error has a JSON body, and the server keeps serving normal requests afterwards.
//! The outcome of each case is written to `target/artifacts/hostile-requests.md`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{Backend, TEST_TOKEN_KEY, TestDb};
use crate::{TestApp, spawn_app_with_server};

/// How a case's answer must look.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// A routed error: 4xx with a JSON (problem or OAuth) body.
    RoutedJson,
    /// Rejected by the HTTP parser before routing: 4xx (body may be empty) or the connection closed.
    Protocol,
    /// Any non-5xx answer (the request is odd but acceptable, e.g. an ignored header).
    AnyNon5xx,
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    expect: Expect,
}

struct Answer {
    status: Option<u16>,
    content_type: String,
    body: String,
}

fn send_raw(port: u16, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if response_complete(&raw) {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        body: body.to_owned(),
    }
}

fn response_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    length.is_some_and(|n| body.len() >= n)
}

fn get(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n")
        .into_bytes()
}

fn with_body(method: &str, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn forged(header: &str, claims: &str) -> String {
    use jsonwebtoken::{EncodingKey, Header};
    let claims: serde_json::Value = serde_json::from_str(claims).unwrap();
    let header: Header = serde_json::from_str(header).unwrap();
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(TEST_TOKEN_KEY.as_bytes()),
    )
    .unwrap()
}

fn cases(token: &str) -> Vec<Case> {
    use Expect::{AnyNon5xx, Protocol, RoutedJson};
    let auth = format!("Authorization: Bearer {token}\r\n");
    let authed = |path: &str| get(path, &auth);
    let case = |name, request, expect| Case {
        name,
        request,
        expect,
    };
    let far_future = 99_999_999_999u64;
    let claims = format!(
        r#"{{"sub":"1","name":"x","email":"x@y.z","iat":1,"exp":{far_future},"iss":"myapi","ver":0}}"#
    );
    let none_token = format!(
        "{}.{}.",
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
        forged(r#"{"alg":"HS256"}"#, &claims)
            .split('.')
            .nth(1)
            .unwrap()
    );
    vec![
        // SQL injection attempts.
        case("sqli in year", authed("/movies/new?year=1990%27%20OR%20%271%27=%271&rating=9"), RoutedJson),
        case("sqli in rating", authed("/movies/new?year=1990&rating=9;DROP%20TABLE%20movies"), RoutedJson),
        case("sqli in movie_id query", authed("/movies/?movie_id=1%20OR%201=1"), RoutedJson),
        case("sqli in path", authed("/movies/1;DROP%20TABLE%20users"), RoutedJson),
        case("sqli quote in path", authed("/movies/1%27--"), RoutedJson),
        case("union select", authed("/movies/new?year=1990%20UNION%20SELECT%20*%20FROM%20users&rating=0"), RoutedJson),
        case("sqli in username", with_body("POST", "/token", "application/x-www-form-urlencoded", b"username=%27%20OR%201=1--&password=x%27%20OR%20%271%27=%271"), RoutedJson),
        case("sqli comment in email", with_body("POST", "/token", "application/x-www-form-urlencoded", b"username=admin%40x.io%27--&password=whatever12"), RoutedJson),
        // Numbers: huge, negative, overflowing, special.
        case("year overflow i64", authed("/movies/new?year=99999999999999999999999&rating=9"), RoutedJson),
        case("year negative", authed("/movies/new?year=-1&rating=9"), RoutedJson),
        case("rating 1e309", authed("/movies/new?year=1990&rating=1e309"), RoutedJson),
        case("rating NaN", authed("/movies/new?year=1990&rating=NaN"), RoutedJson),
        case("rating -inf", authed("/movies/new?year=1990&rating=-inf"), RoutedJson),
        case("limit i64 max + 1", authed("/movies/new?year=1990&rating=9&limit=9223372036854775808"), RoutedJson),
        case("limit negative", authed("/movies/new?year=1990&rating=9&limit=-1"), RoutedJson),
        case("offset huge", authed("/movies/new?year=1990&rating=9&offset=99999999999"), RoutedJson),
        case("offset float", authed("/movies/new?year=1990&rating=9&offset=1.5"), RoutedJson),
        case("movie_id i64 min - 1", authed("/movies/-9223372036854775809"), RoutedJson),
        case("movie_id zero", authed("/movies/0"), RoutedJson),
        case("movie_id negative", authed("/movies/?movie_id=-5"), RoutedJson),
        case("movie_id hex", authed("/movies/0x10"), RoutedJson),
        case("unicode digits", authed("/movies/new?year=%D9%A1%D9%A9%D9%A9%D9%A0&rating=9"), RoutedJson),
        // Repeated and empty parameters.
        case("repeated year", authed("/movies/new?year=1990&year=2000&rating=9"), RoutedJson),
        case("repeated movie_id", authed("/movies/?movie_id=1&movie_id=2"), RoutedJson),
        case("empty values", authed("/movies/new?year=&rating="), RoutedJson),
        case("missing all", authed("/movies/new"), RoutedJson),
        // Encodings, NUL bytes, invalid UTF-8.
        case("invalid percent escape", authed("/movies/new?year=%ZZ&rating=9"), RoutedJson),
        case("invalid UTF-8 in query", authed("/movies/new?year=%FF%FE&rating=9"), RoutedJson),
        case("NUL in query", authed("/movies/new?year=1990%00&rating=9"), RoutedJson),
        case("NUL in path", authed("/movies/1%00"), RoutedJson),
        case("CRLF in query", authed("/movies/new?year=1990%0d%0aX-Injected:%201&rating=9"), RoutedJson),
        case("long query", authed(&format!("/movies/new?year=1990&rating=9&pad={}", "a".repeat(6000))), AnyNon5xx),
        case("invalid UTF-8 form", with_body("POST", "/token", "application/x-www-form-urlencoded", b"username=\xff\xfe&password=\xc3\x28"), RoutedJson),
        case("NUL in password", with_body("POST", "/token", "application/x-www-form-urlencoded", b"username=a%40b.co&password=abc%00defgh"), RoutedJson),
        // Tokens: missing, forged, expired, alg none, oversized.
        case("no token", get("/movies/1", ""), RoutedJson),
        case("empty bearer", get("/movies/1", "Authorization: Bearer\r\n"), RoutedJson),
        case("bearer with spaces", get("/movies/1", "Authorization: Bearer a b c\r\n"), RoutedJson),
        case("garbage token", get("/movies/1", "Authorization: Bearer a.b.c\r\n"), RoutedJson),
        case("alg none", get("/movies/1", &format!("Authorization: Bearer {none_token}\r\n")), RoutedJson),
        case("HS512 token", get("/movies/1", &format!("Authorization: Bearer {}\r\n", forged(r#"{"alg":"HS512"}"#, &claims))), RoutedJson),
        case("expired token", get("/movies/1", &format!("Authorization: Bearer {}\r\n", forged(r#"{"alg":"HS256"}"#, &claims.replace(&far_future.to_string(), "1000")))), RoutedJson),
        case("sub of a non-user", get("/movies/1", &format!("Authorization: Bearer {}\r\n", forged(r#"{"alg":"HS256"}"#, &claims.replace(r#""sub":"1""#, r#""sub":"424242""#)))), RoutedJson),
        case("sub not a number", get("/movies/1", &format!("Authorization: Bearer {}\r\n", forged(r#"{"alg":"HS256"}"#, &claims.replace(r#""sub":"1""#, r#""sub":"1 OR 1=1""#)))), RoutedJson),
        case("10 KB token", get("/movies/1", &format!("Authorization: Bearer {}\r\n", "a".repeat(10_000))), RoutedJson),
        case("basic auth", get("/movies/1", "Authorization: Basic YWRtaW46YWRtaW4=\r\n"), RoutedJson),
        case("two authorization headers", get("/movies/1", &format!("{auth}Authorization: Bearer x\r\n")), RoutedJson),
        case("non-ASCII authorization", { let mut r = get("/movies/1", ""); r.truncate(r.len() - 2); r.extend_from_slice(b"Authorization: Bearer \xff\xfe\r\n\r\n"); r }, RoutedJson),
        // Wrong methods and content types.
        case("DELETE movie", format!("DELETE /movies/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n").into_bytes(), RoutedJson),
        case("PUT token", with_body("PUT", "/token", "application/x-www-form-urlencoded", b"username=a&password=b"), RoutedJson),
        case("PATCH health", with_body("PATCH", "/health", "application/json", b"{}"), RoutedJson),
        case("POST movies/new", with_body("POST", "/movies/new", "application/json", b"{}"), RoutedJson),
        case("TRACE health", b"TRACE /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), RoutedJson),
        case("token as JSON", with_body("POST", "/token", "application/json", br#"{"username":"a@b.co","password":"12345678"}"#), RoutedJson),
        case("token as multipart", with_body("POST", "/token", "multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\na\r\n--x--"), RoutedJson),
        case("token as XML", with_body("POST", "/token", "application/xml", b"<a/>"), RoutedJson),
        case("token without body", with_body("POST", "/token", "application/x-www-form-urlencoded", b""), RoutedJson),
        case("token array syntax", with_body("POST", "/token", "application/x-www-form-urlencoded", b"username[]=a&password[]=b"), RoutedJson),
        case("token repeated grant_type", with_body("POST", "/token", "application/x-www-form-urlencoded", b"grant_type=password&grant_type=password&username=a&password=b"), RoutedJson),
        case("token 10 KB username", with_body("POST", "/token", "application/x-www-form-urlencoded", format!("username={}&password=x12345678", "a".repeat(3000)).as_bytes()), RoutedJson),
        // Oversized bodies and headers.
        case("1 MB token body", with_body("POST", "/token", "application/x-www-form-urlencoded", &vec![b'a'; 1 << 20]), RoutedJson),
        case("100 headers", get("/health", &"X-Pad: 1\r\n".repeat(100)), Protocol),
        case("64 KB header", get("/health", &format!("X-Big: {}\r\n", "b".repeat(65_536))), RoutedJson),
        case("20 KB cookie", get("/health", &format!("Cookie: c={}\r\n", "c".repeat(20_000))), RoutedJson),
        case("64 KB path", get(&format!("/{}", "p".repeat(65_536)), ""), Protocol),
        // Protocol abuse and path tricks.
        case("garbage request line", b"\x00\x01\x02 garbage\r\n\r\n".to_vec(), Protocol),
        case("header without colon", b"GET /health HTTP/1.1\r\nHost x\r\nBroken\r\n\r\n".to_vec(), Protocol),
        case("bad chunked body", b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n".to_vec(), Protocol),
        case("content-length and chunked", b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), Protocol),
        case("path traversal", get("/../../etc/passwd", ""), RoutedJson),
        case("encoded traversal", get("/docs/..%2f..%2fetc%2fpasswd", ""), AnyNon5xx),
        case("double slashes", authed("//movies//1"), RoutedJson),
        case("absolute-form URL", b"GET http://evil.example/health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".to_vec(), AnyNon5xx),
        case("HTTP/1.0 without host", b"GET /health HTTP/1.0\r\n\r\n".to_vec(), AnyNon5xx),
        case("unknown method", b"BREW /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), RoutedJson),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_never_get_a_5xx() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        let app = spawn_app_with_server(db, |s| s.client_request_timeout_ms = 1000).await;
        app.import_sample().await;
        let token = app.login_new_user("hostile@example.com").await;
        let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
        let cases = cases(&token);
        assert!(cases.len() >= 60, "{} cases", cases.len());
        let mut report = format!("| case ({backend:?}) | status | content type |\n|---|---|---|\n");
        let mut failures = Vec::new();
        for case in &cases {
            let request = case.request.clone();
            let answer = tokio::task::spawn_blocking(move || send_raw(port, &request))
                .await
                .unwrap();
            let status = answer.status.map_or("closed".into(), |s| s.to_string());
            report.push_str(&format!(
                "| {} | {status} | {} |\n",
                case.name, answer.content_type
            ));
            let server_error = answer.status.is_some_and(|s| s >= 500);
            let ok = !server_error
                && match case.expect {
                    Expect::RoutedJson => {
                        answer.status.is_some_and(|s| (400..500).contains(&s))
                            && answer.content_type.contains("json")
                            && serde_json::from_str::<serde_json::Value>(&answer.body).is_ok()
                    }
                    Expect::Protocol => answer.status.is_none_or(|s| (400..500).contains(&s)),
                    Expect::AnyNon5xx => true,
                };
            if !ok {
                failures.push(format!(
                    "{}: {status} {} {}",
                    case.name, answer.content_type, answer.body
                ));
            }
        }
        assert_still_serving(&app, &token).await;
        half_sent_request_is_timed_out(port).await;
        assert_still_serving(&app, &token).await;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/artifacts");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            format!("{dir}/hostile-requests-{backend:?}.md").to_lowercase(),
            &report,
        )
        .unwrap();
        assert!(
            failures.is_empty(),
            "hostile cases failed:\n{}",
            failures.join("\n")
        );
    }
}

async fn assert_still_serving(app: &TestApp, token: &str) {
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.get_authed("/movies/1", token).await.status(), 200);
}

/// A client that sends half a request and stalls is cut off (408 or close), not served forever.
async fn half_sent_request_is_timed_out(port: u16) {
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: local")
            .unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf);
        (
            started.elapsed(),
            String::from_utf8_lossy(&buf).into_owned(),
        )
    })
    .await
    .unwrap();
    assert!(
        answer.0 < Duration::from_secs(4),
        "stalled client held for {:?}",
        answer.0
    );
    assert!(
        answer.1.is_empty() || answer.1.starts_with("HTTP/1.1 408"),
        "{}",
        answer.1
    );
}

//! How the real binary stops: SIGTERM drains (`/ready` 503 while requests are still served),
//! SIGINT does not, a second signal cuts the drain short or ends a stop, a signal at any
//! moment after start-up is caught, and a service manager hears when it is ready and when it
//! stops.

use std::time::{Duration, Instant};

use crate::binary::{send_signal, server, start_command, terminate, wait_for_exit};
use crate::support::{Backend, TestDb};

/// `/ready`'s status, or `None` once nothing listens.
async fn ready_status(client: &reqwest::Client, port: u16) -> Option<reqwest::Response> {
    client
        .get(format!("http://127.0.0.1:{port}/ready"))
        .send()
        .await
        .ok()
}

#[tokio::test]
async fn sigterm_drains_while_serving_then_stops() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let mut command = server(&db);
    command.env("MYAPI_SERVER__DRAIN_SECS", "2");
    let (mut child, port, log) = start_command(command);
    // A fresh client per call: a kept-alive connection would outlive the listener.
    let client = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    assert_eq!(ready_status(&client(), port).await.unwrap().status(), 200);

    let signalled = Instant::now();
    send_signal(&child, "TERM");
    let draining = loop {
        let response = ready_status(&client(), port).await.unwrap();
        if response.status() == 503 {
            break response;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "never drained"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(draining.headers()["retry-after"], "5");
    assert_eq!(
        draining.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = draining.json().await.unwrap();
    assert_eq!(body["detail"], "this instance is stopping");
    // Still serving everything else while it drains.
    let health = client()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let status = wait_for_exit(&mut child);
    let lines: Vec<String> = log.try_iter().collect();
    assert!(status.success(), "{status:?}: {lines:#?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "stopped after {:?}, before its drain ended",
        signalled.elapsed()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("SIGTERM: draining for 2 s")),
        "{lines:#?}"
    );
    assert!(ready_status(&client(), port).await.is_none());
}

#[tokio::test]
async fn a_second_signal_ends_the_drain_and_sigint_skips_it() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    for (signals, name) in [
        (&["TERM", "TERM"][..], "SIGTERM twice"),
        (&["INT"], "SIGINT"),
    ] {
        let mut command = server(&db);
        command.env("MYAPI_SERVER__DRAIN_SECS", "600");
        let (mut child, port, log) = start_command(command);
        assert_eq!(
            ready_status(&reqwest::Client::new(), port)
                .await
                .unwrap()
                .status(),
            200
        );
        let signalled = Instant::now();
        for signal in signals {
            send_signal(&child, signal);
            // Lets the first be acted on before the second arrives.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let status = wait_for_exit(&mut child);
        let lines: Vec<String> = log.try_iter().collect();
        assert!(status.success(), "{name}: {status:?}: {lines:#?}");
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "{name}: took {:?}",
            signalled.elapsed()
        );
    }
}

/// A stop waits for a request in flight (a login hashing for seconds); a further signal
/// ends the process at once, with exit code 1.
#[tokio::test]
async fn a_signal_during_the_stop_ends_the_process() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let mut command = server(&db);
    command
        .env("MYAPI_SERVER__DRAIN_SECS", "0")
        .env("MYAPI_SERVER__SHUTDOWN_TIMEOUT_SECS", "120")
        // Several seconds a hash (on a test machine's core).
        .env("MYAPI_AUTH__ARGON2_ITERATIONS", "600");
    let (mut child, port, log) = start_command(command);
    let login = tokio::spawn(
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", "nobody@example.com"),
                ("password", "not-the-password"),
            ])
            .send(),
    );
    // The login is hashing once the access log has not yet named it but the request is in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_signal(&child, "INT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "stopped without waiting for the login in flight"
    );
    let signalled = Instant::now();
    send_signal(&child, "INT");
    let status = wait_for_exit(&mut child);
    let lines: Vec<String> = log.try_iter().collect();
    assert_eq!(status.code(), Some(1), "{lines:#?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "took {:?}",
        signalled.elapsed()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("SIGINT during the stop: exiting now")),
        "{lines:#?}"
    );
    let _ = login.await;
}

/// Handlers are installed before the port is bound: a SIGTERM as soon as the server says it
/// listens, before it has answered anything, is a clean stop and never the default action
/// (death by signal), which is what actix's own handlers, installed later, allowed.
#[tokio::test]
async fn a_sigterm_right_after_start_is_a_clean_stop() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    for _ in 0..5 {
        let (mut child, _port, log) = start_command(server(&db));
        let status = terminate(&mut child);
        let lines: Vec<String> = log.try_iter().collect();
        assert!(status.success(), "{status:?}: {lines:#?}");
    }
}

/// The `sd_notify` protocol as systemd speaks it (`Type=notify`): a datagram socket named by
/// `NOTIFY_SOCKET` gets `READY=1` once the server listens and `STOPPING=1` when a stop begins.
#[tokio::test]
async fn a_service_manager_is_told_ready_then_stopping() {
    use std::os::unix::net::UnixDatagram;
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let socket_path = db.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut command = server(&db);
    command.env("NOTIFY_SOCKET", &socket_path);
    let (mut child, port, log) = start_command(command);
    let mut message = [0; 256];
    let read = |socket: &UnixDatagram, buffer: &mut [u8]| {
        let n = socket.recv(buffer).unwrap();
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    assert_eq!(read(&socket, &mut message).trim(), "READY=1");
    let health = reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    send_signal(&child, "TERM");
    assert_eq!(read(&socket, &mut message).trim(), "STOPPING=1");
    let status = wait_for_exit(&mut child);
    let lines: Vec<String> = log.try_iter().collect();
    assert!(status.success(), "{status:?}: {lines:#?}");
}

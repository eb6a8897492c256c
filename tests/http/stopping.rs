//! How the real binary stops: SIGTERM drains (`/ready` 503 while requests are still served),
//! SIGINT does not, a second signal cuts the drain short or ends a stop, a signal at any
//! moment after start-up is caught, and a service manager hears when it is ready and when it
//! stops.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::binary::{send_signal, server, start_command, terminate, wait_for_exit};
use crate::support::{Backend, TestCluster, TestDb};

/// `/ready`'s status, or `None` once nothing listens.
async fn ready_status(client: &reqwest::Client, port: u16) -> Option<reqwest::Response> {
    client
        .get(format!("http://127.0.0.1:{port}/ready"))
        .send()
        .await
        .ok()
}

/// Reads the server's log until a line contains `needle` (signals are merged while one
/// waits to be handled, so a test sends the next only once the server has logged the first);
/// returns the lines read.
fn wait_for_log(log: &Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match log.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                lines.push(line);
                if found {
                    return lines;
                }
            }
            Err(_) => break,
        }
    }
    panic!("the server never logged {needle:?}: {lines:#?}");
}

#[tokio::test]
async fn sigterm_drains_while_serving_then_stops() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let mut command = server(&db);
    command.env("MYAPI_SERVER__DRAIN_SECS", "5");
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
        signalled.elapsed() >= Duration::from_secs(5),
        "stopped after {:?}, before its drain ended",
        signalled.elapsed()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("SIGTERM: draining for 5 s")),
        "{lines:#?}"
    );
    assert!(ready_status(&client(), port).await.is_none());
}

#[tokio::test]
async fn a_second_signal_ends_the_drain_and_sigint_or_sigquit_skip_it() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    for (signals, name) in [
        (&["TERM", "TERM"][..], "SIGTERM twice"),
        (&["INT"], "SIGINT"),
        (&["QUIT"], "SIGQUIT"),
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
        send_signal(&child, signals[0]);
        if let Some(second) = signals.get(1) {
            wait_for_log(&log, "SIGTERM: draining for 600 s");
            send_signal(&child, second);
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

/// A stop waits for the connections still open (here an idle kept-alive one); a further
/// signal ends the process at once, with exit code 1.
#[tokio::test]
async fn a_signal_during_the_stop_ends_the_process() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let mut command = server(&db);
    command
        .env("MYAPI_SERVER__DRAIN_SECS", "0")
        .env("MYAPI_SERVER__SHUTDOWN_TIMEOUT_SECS", "120")
        .env("MYAPI_SERVER__KEEP_ALIVE_SECS", "120");
    let (mut child, port, log) = start_command(command);
    let mut held = TcpStream::connect(("127.0.0.1", port)).unwrap();
    held.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut answer = [0; 12];
    held.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");

    send_signal(&child, "INT");
    let mut lines = wait_for_log(&log, "SIGINT: stopping");
    std::thread::sleep(Duration::from_millis(500));
    if let Some(status) = child.try_wait().unwrap() {
        lines.extend(std::iter::from_fn(|| {
            log.recv_timeout(Duration::from_secs(2)).ok()
        }));
        panic!("stopped without waiting for the open connection: {status:?}: {lines:#?}");
    }
    let signalled = Instant::now();
    send_signal(&child, "INT");
    let status = wait_for_exit(&mut child);
    lines.extend(log.try_iter());
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

/// The stop does not wait on a database that stopped answering: a throttled login leaves a
/// count for the audit trail to write at the stop, the database is frozen (SIGSTOP: its
/// connections stay open and the kernel acknowledges what is sent, so only a limit of our
/// own ends the wait), and the stop still ends, giving up that write, with exit code 0.
#[tokio::test]
async fn a_frozen_database_does_not_hold_the_stop() {
    let test = "a_frozen_database_does_not_hold_the_stop";
    let Some(cluster) = TestCluster::new(test, &[]) else {
        return;
    };
    cluster.start().unwrap();
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let mut command = server(&db);
    command
        .env("MYAPI_DATABASE__DSN", cluster.dsn())
        .env("MYAPI_SERVER__DRAIN_SECS", "0")
        .env("MYAPI_AUTH__IP_FAILURE_BURST", "1");
    let (mut child, port, log) = start_command(command);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let response = client
            .post(format!("http://127.0.0.1:{port}/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", "nobody@example.com"),
                ("password", "not-the-password"),
            ])
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [400, 429]);

    let frozen = cluster_processes(&cluster);
    signal_all(&frozen, "STOP");
    let signalled = Instant::now();
    send_signal(&child, "TERM");
    let status = wait_for_exit(&mut child);
    let took = signalled.elapsed();
    signal_all(&frozen, "CONT");
    let lines: Vec<String> = log.try_iter().collect();
    assert!(status.success(), "{status:?}: {lines:#?}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {lines:#?}");
    assert!(
        lines.iter().any(
            |l| l.contains("audit: throttled answers of the last minute not written")
                || l.contains("did not finish within 3 s")
        ),
        "{lines:#?}"
    );
}

/// The postmaster of `cluster` and every process it started.
fn cluster_processes(cluster: &TestCluster) -> Vec<String> {
    let pid_file = std::fs::read_to_string(cluster.data().join("postmaster.pid")).unwrap();
    let postmaster = pid_file.lines().next().unwrap().trim().to_owned();
    let children = std::process::Command::new("pgrep")
        .args(["-P", &postmaster])
        .output()
        .unwrap();
    let mut pids = vec![postmaster];
    pids.extend(
        String::from_utf8_lossy(&children.stdout)
            .split_whitespace()
            .map(str::to_owned),
    );
    pids
}

fn signal_all(pids: &[String], signal: &str) {
    let sent = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids)
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pids:?}");
}

//! The mail outbox against a real SMTP server (aiosmtpd, `tests/clients/smtp_sink.py`):
//! two instances drain one outbox and deliver every mail once, a refused mail is sent on
//! retry, and mail held by a sender that stopped is sent by another once its lease ends.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use myapi_services::Settings;
use myapi_services::config::MailTransport;
use myapi_services::mail::OutgoingMail;

use crate::oauth_clients::{python_has, reserved_port};
use crate::support::{TestDb, psql};
use crate::{both_backends, spawn_app_with};

const SINK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/clients/smtp_sink.py"
);

/// A real SMTP server for one test, and what it accepted. Stopped when dropped.
pub struct SmtpSink {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts one with `options` (`--refuse N`, `--hang`); `None` without aiosmtpd (outside
    /// CI, where the test then skips).
    pub fn start(options: &[&str]) -> Option<Self> {
        if !python_has("aiosmtpd", "aiosmtpd") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let port = reserved_port();
        let mut child = Command::new("python3")
            .arg(SINK)
            .arg(port.to_string())
            .arg(&out)
            .args(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "the SMTP sink did not start");
        Some(Self {
            child,
            port,
            out,
            _dir: dir,
        })
    }

    /// Points `settings` at this server.
    pub fn configure(&self, settings: &mut Settings) {
        settings.mail.transport = MailTransport::Smtp;
        settings.mail.smtp_url = Some(format!("smtp://127.0.0.1:{}", self.port).parse().unwrap());
    }

    pub fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// What it accepted, once that is at least `count` mails, or after `within`.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received();
            if received.len() >= count || Instant::now() > deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn queue(services: &myapi_services::Services, to: &str, subject: &str) {
    let (services, to, subject) = (services.clone(), to.to_owned(), subject.to_owned());
    tokio::task::spawn_blocking(move || {
        services.mail.queue(&OutgoingMail {
            to: &to,
            subject: &subject,
            body: "Hello.\nThis line is long enough that a mail transport might fold or encode it, which must not change what arrives.",
        })
    })
    .await
    .unwrap()
    .unwrap();
}

async fn two_instances_deliver_every_mail_once(db: TestDb) {
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let app = spawn_app_with(db, |s| sink.configure(s)).await;
    app.start_instance(|s| sink.configure(s)).await;
    const MAILS: usize = 40;
    for n in 0..MAILS {
        queue(
            &app.services,
            &format!("user{n}@example.com"),
            &format!("mail {n}"),
        )
        .await;
    }
    let received = sink.wait_for(MAILS, Duration::from_secs(20)).await;
    assert_eq!(received.len(), MAILS, "{received:#?}");
    // Both senders keep looking: nothing arrives twice later either.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let received = sink.received();
    assert_eq!(received.len(), MAILS);
    let mut subjects: Vec<&str> = received
        .iter()
        .map(|mail| mail["subject"].as_str().unwrap())
        .collect();
    subjects.sort_unstable();
    subjects.dedup();
    assert_eq!(subjects.len(), MAILS, "each mail once");
    let mut ids: Vec<&str> = received
        .iter()
        .map(|mail| mail["message_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), MAILS, "one Message-ID each");
    let first = &received[0];
    assert!(
        first["from"]
            .as_str()
            .unwrap()
            .contains("no-reply@localhost")
    );
    assert!(
        first["message_id"]
            .as_str()
            .unwrap()
            .ends_with("@localhost>")
    );
    let n: usize = first["subject"].as_str().unwrap()[5..].parse().unwrap();
    assert_eq!(first["to"][0], format!("user{n}@example.com"));
    assert!(
        first["body"]
            .as_str()
            .unwrap()
            .contains("which must not change what arrives.")
    );
}
both_backends!(two_instances_deliver_every_mail_once);

async fn a_refused_mail_is_sent_on_retry(db: TestDb) {
    let Some(sink) = SmtpSink::start(&["--refuse", "1"]) else {
        return;
    };
    let app = spawn_app_with(db, |s| sink.configure(s)).await;
    queue(&app.services, "retry@example.com", "refused once").await;
    let received = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1, "sent on the second attempt");
    if app.services.database.backend_name() == "postgres" {
        let row = psql(
            &app.db.dsn,
            "SELECT attempts, last_error LIKE '%451%', sent_at IS NOT NULL FROM myapi.mail_outbox",
        );
        assert_eq!(row, "2|t|t");
    }
}
both_backends!(a_refused_mail_is_sent_on_retry);

/// A sender that stopped answering (its SMTP server hangs, as a process that died would
/// never come back) holds its mail only until its lease ends; another instance sends it.
async fn mail_held_by_a_stuck_sender_is_sent_after_its_lease(db: TestDb) {
    let (Some(stuck), Some(working)) = (SmtpSink::start(&["--hang"]), SmtpSink::start(&[])) else {
        return;
    };
    let lease = |s: &mut Settings| s.mail.lease_secs = 2.try_into().unwrap();
    // Every sender so far talks to the server that hangs: whichever claims the mail, the
    // server's or the test's own, is stuck with it.
    let app = spawn_app_with(db, |s| {
        stuck.configure(s);
        lease(s);
    })
    .await;
    queue(&app.services, "held@example.com", "held").await;
    let claimer = app.services.clone();
    std::thread::spawn(move || claimer.mail.send_due());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(stuck.received().is_empty());
    let started = Instant::now();
    app.start_instance(|s| {
        working.configure(s);
        lease(s);
    })
    .await;
    let received = working.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1, "delivered by the other instance");
    assert_eq!(received[0]["subject"], "held");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "took {waited:?}");
}
both_backends!(mail_held_by_a_stuck_sender_is_sent_after_its_lease);

//! Mail through an outbox: a mail is a row of `mail_outbox`, written by [`MailOutbox::enqueue`]
//! in the transaction that makes what it carries, and sent by a thread in each server
//! ([`MailService::start_sender`]) that claims due rows for `mail.lease_secs`, sends them outside
//! the claiming transaction and marks them sent.
//!
//! A mail is never lost once its transaction commits: a crash before sending only delays it
//! until the lease ends. It is sent twice only when a process dies (or loses the database)
//! after the SMTP server took it and before marking it sent: exactly once over SMTP cannot
//! be had, since no SMTP reply can be made atomic with a database write. Every mail keeps one
//! `Message-ID` across attempts, so a receiver can drop the duplicate.

use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};
use myapi_models::DbConnection;
use myapi_models::rows::{ClaimedMailRow, NewMailRow};
use myapi_models::schema::{mail_outbox, users};

use crate::audit::unix_now;
use crate::config::{MailSettings, MailTransport, SmtpSecurity, SmtpUrl};
use crate::database::Database;
use crate::secrets::random_id;
use crate::{ServiceError, error_chain};

/// How often an idle sender looks for due mail (a mail queued on this instance wakes it).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Mails one claim takes.
const BATCH: i64 = 16;
/// The longest wait between two attempts at one mail.
const MAX_BACKOFF_SECS: i64 = 3600;
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long before its lease ends a sender stops starting sends: two SMTP steps' timeout.
const LEASE_MARGIN_SECS: i64 = 30;

/// Why a mail was not sent, and whether trying again could help.
struct Failure {
    reason: String,
    permanent: bool,
}

/// Mails sent, by `result`: `sent`, `retry` (failed, tried again later) or `failed` (given
/// up after `mail.max_attempts`).
pub const SENT_METRIC: &str = "myapi_mail_sent_total";
/// Mails waiting to be sent, in the whole outbox (every instance reports the same count).
pub const PENDING_METRIC: &str = "myapi_mail_outbox_pending";

/// The SMTP transport `url` names: STARTTLS required unless loopback, or implicit TLS.
fn smtp_transport(url: &SmtpUrl) -> Result<SmtpTransport, lettre::transport::smtp::Error> {
    let builder = match url.security {
        SmtpSecurity::ImplicitTls => SmtpTransport::relay(&url.host)?,
        SmtpSecurity::StartTls => SmtpTransport::starttls_relay(&url.host)?,
        SmtpSecurity::Plain => SmtpTransport::builder_dangerous(&url.host),
    };
    let builder = builder.port(url.port).timeout(Some(SMTP_TIMEOUT));
    Ok(match &url.credentials {
        Some((user, password)) => builder
            .credentials(Credentials::new(user.clone(), password.clone()))
            .build(),
        None => builder.build(),
    })
}

/// A mail to queue: plain text to one recipient.
#[derive(Debug, Clone)]
pub struct OutgoingMail<'a> {
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// Writes mail into the outbox, in the caller's transaction. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MailOutbox {
    /// What every `Message-ID` ends with: the `From` address's domain.
    message_id_domain: Arc<str>,
    link_base_url: Arc<str>,
    wake: Sender<()>,
}

impl MailOutbox {
    /// Queues `mail` on `conn`, inside the caller's transaction: it is sent once that
    /// commits, and never if it rolls back.
    pub fn enqueue(&self, conn: &mut DbConnection, mail: &OutgoingMail<'_>) -> QueryResult<()> {
        let now = unix_now();
        let message_id = format!("<{}@{}>", random_id(), self.message_id_domain);
        diesel::insert_into(mail_outbox::table)
            .values(&NewMailRow {
                message_id: &message_id,
                recipient: mail.to,
                subject: mail.subject,
                body: mail.body,
                created_at: now,
                next_attempt_at: now,
            })
            .execute(conn)?;
        Ok(())
    }

    /// Queues a mail to the account with this (lower-case) `email`, if there is one, in the
    /// caller's transaction: the same statement either way (an insert of what a select of
    /// the account finds), so that its cost does not tell whether the account exists.
    /// Returns how many were queued (0 or 1).
    pub fn enqueue_to_account(
        &self,
        conn: &mut DbConnection,
        email: &str,
        subject: &str,
        body: &str,
    ) -> QueryResult<usize> {
        let now = unix_now();
        let message_id = format!("<{}@{}>", random_id(), self.message_id_domain);
        diesel::insert_into(mail_outbox::table)
            .values(users::table.filter(users::email.eq(email)).select((
                message_id.into_sql::<Text>(),
                users::email,
                subject.into_sql::<Text>(),
                body.into_sql::<Text>(),
                now.into_sql::<BigInt>(),
                now.into_sql::<BigInt>(),
            )))
            .into_columns((
                mail_outbox::message_id,
                mail_outbox::recipient,
                mail_outbox::subject,
                mail_outbox::body,
                mail_outbox::created_at,
                mail_outbox::next_attempt_at,
            ))
            .execute(conn)
    }

    /// Tells this instance's sender that mail was committed, so it need not wait for its
    /// next look.
    pub fn wake_sender(&self) {
        // A full channel already holds a wake-up.
        let _ = self.wake.try_send(());
    }

    /// A link to `path` of `mail.link_base_url` carrying `token`.
    pub fn link(&self, path: &str, token: &str) -> String {
        format!(
            "{}/{}?token={token}",
            self.link_base_url.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

/// The outbox and its sender.
#[derive(Clone)]
pub struct MailService {
    pub outbox: MailOutbox,
    inner: Arc<Sending>,
}

struct Sending {
    db: Database,
    transport: Delivery,
    from: Mailbox,
    max_attempts: i32,
    lease_secs: i64,
    woken: Receiver<()>,
}

enum Delivery {
    Log,
    Smtp(SmtpTransport),
}

impl MailService {
    pub fn new(db: Database, settings: &MailSettings) -> Result<Self, ServiceError> {
        let transport = match (settings.transport, &settings.smtp_url) {
            (MailTransport::Log, _) => Delivery::Log,
            (MailTransport::Smtp, Some(url)) => Delivery::Smtp(
                smtp_transport(url)
                    .map_err(|e| ServiceError::invalid("mail.smtp_url", e.to_string()))?,
            ),
            (MailTransport::Smtp, None) => {
                return Err(ServiceError::invalid(
                    "mail.smtp_url",
                    "is required with mail.transport = \"smtp\"",
                ));
            }
        };
        let (wake, woken) = crossbeam_channel::bounded(1);
        Ok(Self {
            outbox: MailOutbox {
                message_id_domain: settings.from.email.domain().into(),
                link_base_url: settings.link_base_url.as_str().into(),
                wake,
            },
            inner: Arc::new(Sending {
                db,
                transport,
                from: settings.from.clone(),
                max_attempts: i32::try_from(settings.max_attempts.get()).unwrap_or(i32::MAX),
                lease_secs: settings.lease_secs.get().into(),
                woken,
            }),
        })
    }

    /// Starts this instance's sender thread, which ends once every clone of this service is
    /// dropped. Several instances may each run one on the same database.
    pub fn start_sender(&self) -> std::io::Result<()> {
        let sending = Arc::downgrade(&self.inner);
        thread::Builder::new()
            .name("myapi-mail-sender".into())
            .spawn(move || send_until_dropped(&sending))
            .map(drop)
    }

    /// Queues `mail` in a transaction of its own and wakes this instance's sender
    /// (blocking); for mail that goes with no other write.
    pub fn queue(&self, mail: &OutgoingMail<'_>) -> Result<(), ServiceError> {
        let mut conn = self.inner.db.conn()?;
        self.outbox.enqueue(&mut conn, mail)?;
        self.outbox.wake_sender();
        Ok(())
    }

    /// Claims the mails due now and tries each once (blocking); returns how many it
    /// claimed. The sender thread calls it in a loop; tests call it to drain by hand.
    pub fn send_due(&self) -> Result<usize, ServiceError> {
        self.inner.send_due()
    }
}

fn send_until_dropped(sending: &Weak<Sending>) {
    loop {
        let Some(inner) = sending.upgrade() else {
            return;
        };
        let claimed = match inner.send_due() {
            Ok(claimed) => claimed,
            Err(error) => {
                log::warn!("mail: cannot read the outbox: {}", error_chain(&error));
                0
            }
        };
        let woken = inner.woken.clone();
        drop(inner);
        // A full batch suggests more is due: look again at once.
        if claimed < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            let _ = woken.recv_timeout(POLL_INTERVAL);
        }
    }
}

impl Sending {
    /// An idle look costs one read: the claim, a write, runs only when mail is waiting.
    fn send_due(&self) -> Result<usize, ServiceError> {
        if self.report_pending()? == 0 {
            return Ok(0);
        }
        let claimed_at = unix_now();
        let claimed = self.claim()?;
        // Past this, another sender may take what this one still holds: it stops, and gives
        // back what it has not begun, rather than send what the other may send too.
        let send_by = claimed_at
            .saturating_add(self.lease_secs)
            .saturating_sub(LEASE_MARGIN_SECS);
        for (sent, mail) in claimed.iter().enumerate() {
            if sent > 0 && unix_now() > send_by {
                self.give_back(&claimed[sent..])?;
                break;
            }
            let outcome = self.deliver(mail);
            self.record(mail, outcome)?;
        }
        if !claimed.is_empty() {
            self.report_pending()?;
        }
        Ok(claimed.len())
    }

    /// Takes up to [`BATCH`] due mails that no live lease holds, for `mail.lease_secs`, counting
    /// an attempt on each. PostgreSQL skips rows another sender is claiming at the same
    /// moment; SQLite has one writer at a time.
    fn claim(&self) -> Result<Vec<ClaimedMailRow>, ServiceError> {
        let now = unix_now();
        let mut conn = self.db.conn()?;
        let due = "SELECT message_id FROM mail_outbox \
                   WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= {now} \
                   AND (claimed_until IS NULL OR claimed_until <= {now}) \
                   ORDER BY next_attempt_at LIMIT {batch}";
        let claim = "UPDATE mail_outbox SET claimed_until = {until}, attempts = attempts + 1 \
                     WHERE message_id IN ({due}) \
                     RETURNING message_id, recipient, subject, body, attempts";
        let (now_p, until_p, batch_p, lock) = match &*conn {
            DbConnection::Pg(_) => ("$1", "$2", "$3", " FOR UPDATE SKIP LOCKED"),
            DbConnection::Sqlite(_) => ("?1", "?2", "?3", ""),
        };
        let due = due.replace("{now}", now_p).replace("{batch}", batch_p) + lock;
        let sql = claim.replace("{until}", until_p).replace("{due}", &due);
        Ok(diesel::sql_query(sql)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(now.saturating_add(self.lease_secs))
            .bind::<BigInt, _>(BATCH)
            .load(&mut conn)?)
    }

    /// Returns the untouched mails of a claim to the outbox, their attempt not counted.
    fn give_back(&self, mails: &[ClaimedMailRow]) -> Result<(), ServiceError> {
        let ids: Vec<&str> = mails.iter().map(|mail| mail.message_id.as_str()).collect();
        let mut conn = self.db.conn()?;
        diesel::update(
            mail_outbox::table
                .filter(mail_outbox::message_id.eq_any(&ids))
                .filter(mail_outbox::sent_at.is_null()),
        )
        .set((
            mail_outbox::claimed_until.eq(None::<i64>),
            mail_outbox::attempts.eq(mail_outbox::attempts - 1),
        ))
        .execute(&mut conn)?;
        Ok(())
    }

    fn deliver(&self, mail: &ClaimedMailRow) -> Result<(), Failure> {
        // A message that cannot be built will never be: no retry.
        let permanent = |reason: String| Failure {
            reason,
            permanent: true,
        };
        let message = Message::builder()
            .message_id(Some(mail.message_id.clone()))
            .from(self.from.clone())
            .to(mail
                .recipient
                .parse::<Mailbox>()
                .map_err(|e| permanent(format!("bad recipient: {e}")))?)
            .subject(mail.subject.as_str())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| permanent(format!("cannot build the message: {e}")))?;
        match &self.transport {
            Delivery::Log => {
                log::info!(
                    "mail {} to {} (mail.transport = log): {}\n{}",
                    mail.message_id,
                    mail.recipient,
                    mail.subject,
                    mail.body
                );
                Ok(())
            }
            Delivery::Smtp(transport) => transport.send(&message).map(drop).map_err(|e| Failure {
                reason: error_chain(&e),
                permanent: false,
            }),
        }
    }

    /// Marks `mail` sent, or after a failure schedules the next attempt (backoff doubling
    /// from 1 s up to [`MAX_BACKOFF_SECS`]) or gives it up, after `mail.max_attempts` or at
    /// once when it can never be sent. A mail sent or given up keeps no body: it may hold a
    /// live single-use link, which the database keeps nowhere else in the clear.
    fn record(
        &self,
        mail: &ClaimedMailRow,
        outcome: Result<(), Failure>,
    ) -> Result<(), ServiceError> {
        let now = unix_now();
        let mut conn = self.db.conn()?;
        // Another sender may have sent it meanwhile, after this one's lease ended.
        let row = mail_outbox::table
            .find(&mail.message_id)
            .filter(mail_outbox::sent_at.is_null());
        let result = match outcome {
            Ok(()) => {
                diesel::update(row)
                    .set((
                        mail_outbox::sent_at.eq(now),
                        mail_outbox::claimed_until.eq(None::<i64>),
                        mail_outbox::body.eq(""),
                    ))
                    .execute(&mut conn)?;
                "sent"
            }
            Err(Failure { reason, permanent })
                if permanent || mail.attempts >= self.max_attempts =>
            {
                log::error!(
                    "mail {} to {}: given up after {} attempts: {reason}",
                    mail.message_id,
                    mail.recipient,
                    mail.attempts
                );
                diesel::update(row)
                    .set((
                        mail_outbox::failed_at.eq(now),
                        mail_outbox::claimed_until.eq(None::<i64>),
                        mail_outbox::last_error.eq(&reason),
                        mail_outbox::body.eq(""),
                    ))
                    .execute(&mut conn)?;
                "failed"
            }
            Err(Failure { reason, .. }) => {
                // 2^12 s is past the cap already.
                let doublings = mail.attempts.saturating_sub(1).clamp(0, 12);
                let backoff = (1i64 << doublings).min(MAX_BACKOFF_SECS);
                log::warn!(
                    "mail {} to {}: attempt {} failed, next in {backoff} s: {reason}",
                    mail.message_id,
                    mail.recipient,
                    mail.attempts
                );
                diesel::update(row)
                    .set((
                        mail_outbox::next_attempt_at.eq(now.saturating_add(backoff)),
                        mail_outbox::claimed_until.eq(None::<i64>),
                        mail_outbox::last_error.eq(&reason),
                    ))
                    .execute(&mut conn)?;
                "retry"
            }
        };
        metrics::counter!(SENT_METRIC, "result" => result).increment(1);
        Ok(())
    }

    /// Counts the mail waiting (due or not) into [`PENDING_METRIC`], and returns it.
    fn report_pending(&self) -> Result<i64, ServiceError> {
        let mut conn = self.db.conn()?;
        let pending: i64 = mail_outbox::table
            .filter(mail_outbox::sent_at.is_null())
            .filter(mail_outbox::failed_at.is_null())
            .count()
            .get_result(&mut conn)?;
        #[allow(clippy::cast_precision_loss)] // a count far below 2^52
        metrics::gauge!(PENDING_METRIC).set(pending as f64);
        Ok(pending)
    }
}

//! How the server tells its service manager it is ready, and how it stops: drained, then
//! graceful, and always.
//!
//! Under systemd (`Type=notify`, `deploy/systemd/myapi@.service`) it sends `READY=1` once
//! it serves, after migrations and the bind, and `STOPPING=1` when a stop begins; elsewhere
//! `NOTIFY_SOCKET` is unset and nothing is sent.
//!
//! SIGTERM, what service managers and orchestrators send, starts a drain: `/ready` answers
//! 503 for `server.drain_secs` while every request is still served, so that a load balancer
//! that polls it stops sending here. Then the listener closes and in-flight requests get
//! `server.shutdown_timeout_secs` to finish. SIGINT (Ctrl-C) and SIGQUIT skip the drain. A
//! second signal ends the drain at once; during the stop it ends the process, and so does a
//! stop that outlives its deadline (drain, shutdown timeout and a margin from the first
//! signal), whatever holds it up (exit code 1).
//!
//! The server installs these handlers itself, before it binds, instead of leaving signals to
//! actix-server: actix installs its own only once the server is first polled, after its
//! workers are up, so a SIGTERM sent right after the first answer could meet the default
//! action and kill the process mid-request.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::rt::signal::unix::{Signal, SignalKind, signal};
use actix_web::web::ThinData;
use sd_notify::NotifyState;

/// Time past `shutdown_timeout_secs` that the rest of a stop may take (the metrics listener,
/// the last audit write, blocking work the runtime waits for) before the process is ended.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// The signals that stop the server, caught from [`StopSignals::install`] on.
pub struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
    quit: Signal,
}

/// SIGTERM drains first; SIGINT and SIGQUIT stop without the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Terminate,
    Interrupt,
    Quit,
}

impl StopSignal {
    fn name(self) -> &'static str {
        match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
            Self::Quit => "SIGQUIT",
        }
    }
}

impl StopSignals {
    /// Replaces the default action of SIGTERM, SIGINT and SIGQUIT (ending the process) with
    /// a record that [`Self::recv`] reads. Call inside the runtime, before anything is bound.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<StopSignal> {
        if self.terminate.poll_recv(cx).is_ready() {
            return Poll::Ready(StopSignal::Terminate);
        }
        if self.interrupt.poll_recv(cx).is_ready() {
            return Poll::Ready(StopSignal::Interrupt);
        }
        self.quit.poll_recv(cx).map(|_| StopSignal::Quit)
    }

    async fn recv(&mut self) -> StopSignal {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

/// Set when the first stop signal arrives: `/ready` answers 503 from then on, and
/// [`close_when_stopping`] closes each connection after its answer.
#[derive(Debug, Clone, Default)]
pub struct Stopping(Arc<AtomicBool>);

impl Stopping {
    pub fn is_stopping(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Once a stop has begun, answers with `Connection: close`, so that a client on a kept-alive
/// connection reconnects (through its load balancer, to another instance) instead of
/// holding this one's stop up until `shutdown_timeout_secs` cuts it off.
pub async fn close_when_stopping(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    let stopping = response
        .request()
        .app_data::<ThinData<Stopping>>()
        .is_some_and(|stopping| stopping.is_stopping());
    if stopping {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}

/// The timings of a stop (from `server.drain_secs` and `server.shutdown_timeout_secs`).
#[derive(Debug, Clone, Copy)]
pub struct StopTimes {
    pub drain: Duration,
    pub shutdown_timeout: Duration,
}

/// Waits for a stop signal, drains, and returns when the server should stop accepting.
/// Arms the deadline that ends the process if the stop then hangs, and watches for a
/// further signal that ends it at once.
pub(crate) async fn wait_for_stop(
    mut signals: StopSignals,
    stopping: &Stopping,
    times: StopTimes,
) -> StopSignals {
    let first = signals.recv().await;
    stopping.start();
    tell_service_manager(NotifyState::Stopping);
    let drain = match first {
        StopSignal::Terminate => times.drain,
        StopSignal::Interrupt | StopSignal::Quit => Duration::ZERO,
    };
    // Armed now, for the whole stop: nothing that holds up the runtime from here on (during
    // the drain too) can keep the process alive past it.
    arm_deadline(drain + times.shutdown_timeout + STOP_MARGIN);
    if !drain.is_zero() {
        log::info!(
            "SIGTERM: draining for {} s (/ready answers 503); a second signal stops at once",
            drain.as_secs()
        );
        let mut drained = std::pin::pin!(actix_web::rt::time::sleep(drain));
        let early = std::future::poll_fn(|cx| match drained.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => signals.poll_recv(cx).map(Some),
        })
        .await;
        if let Some(signal) = early {
            log::info!("{}: drain ended early", signal.name());
        }
    }
    log::info!(
        "{}: stopping; in-flight requests have {} s to finish",
        first.name(),
        times.shutdown_timeout.as_secs()
    );
    signals
}

/// Sends `state` to the service manager, if one listens (`NOTIFY_SOCKET`).
pub(crate) fn tell_service_manager(state: NotifyState) {
    if let Err(error) = sd_notify::notify(&[state]) {
        log::warn!("cannot notify the service manager: {error}");
    }
}

/// After a stop has begun, a further signal ends the process at once.
pub(crate) async fn exit_on_next_signal(mut signals: StopSignals) {
    let signal = signals.recv().await;
    log::warn!("{} during the stop: exiting now", signal.name());
    log::logger().flush();
    std::process::exit(1);
}

/// Ends the process if it is still running `after` from now. A thread of its own, so that
/// nothing that holds up the runtime (a stuck worker, blocking work it waits for on exit)
/// can hold up this too.
fn arm_deadline(after: Duration) {
    let armed = std::thread::Builder::new()
        .name("stop-deadline".into())
        .spawn(move || {
            std::thread::sleep(after);
            log::error!(
                "the stop took longer than {} s: exiting without finishing it",
                after.as_secs()
            );
            log::logger().flush();
            std::process::exit(1);
        });
    if let Err(error) = armed {
        log::warn!("no stop deadline (cannot start its thread: {error})");
    }
}

//! Signals as PgBouncer (1.23 and later) reads them: SIGHUP reloads the
//! configuration file (the admin console's RELOAD), SIGUSR1 pauses every
//! pool and SIGUSR2 resumes them; SIGTERM and SIGINT start a shutdown
//! (waiting for clients, or only for transactions), and a second one of
//! either cuts the shutdown short.

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::proxy::Proxy;

/// How the operator asked churnstile to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGTERM: stop accepting and exit once every client has disconnected
    /// (PgBouncer's `SHUTDOWN WAIT_FOR_CLIENTS`).
    WaitForClients,
    /// SIGINT: stop accepting, let transactions finish, then end each
    /// client (PostgreSQL: FATAL 57P01, MySQL: ERR 1053; PgBouncer's `SHUTDOWN
    /// WAIT_FOR_SERVERS`).
    WaitForServers,
}

/// The signals churnstile answers, installed before it accepts anyone.
pub struct Signals {
    hangup: Signal,
    pause: Signal,
    resume: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            pause: signal(SignalKind::user_defined1())?,
            resume: signal(SignalKind::user_defined2())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Answers SIGHUP, SIGUSR1 and SIGUSR2 until SIGTERM or SIGINT comes,
    /// and returns which. `reload` runs on each SIGHUP.
    pub async fn until_shutdown(&mut self, proxy: &Proxy, reload: &dyn Fn()) -> Shutdown {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return Shutdown::WaitForClients,
                _ = self.interrupt.recv() => return Shutdown::WaitForServers,
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    reload();
                }
                _ = self.pause.recv() => pause_all(proxy),
                _ = self.resume.recv() => resume_all(proxy),
            }
        }
    }
}

/// SIGUSR1: new queries wait until SIGUSR2; server connections close as
/// they are given back, as with the console's PAUSE (which also waits
/// for them; a signal has no one to answer).
fn pause_all(proxy: &Proxy) {
    let pools = proxy.pools();
    for pool in &pools {
        pool.control.pause();
    }
    tracing::info!(
        pools = pools.len(),
        "SIGUSR1: every pool paused until SIGUSR2"
    );
}

fn resume_all(proxy: &Proxy) {
    let pools = proxy.pools();
    for pool in &pools {
        pool.control.resume();
    }
    tracing::info!(pools = pools.len(), "SIGUSR2: every pool resumed");
}

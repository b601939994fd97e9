//! One reconnect back-off per pool: while the upstream keeps failing, connect
//! attempts are taken one at a time, spaced by a jittered exponential pause,
//! however many clients are waiting; a healthy pool opens in parallel.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// First pause before retrying a failed connect; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between connect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The pool's outage state and the turn its connect attempts take.
pub(super) struct Backoff {
    /// Held by the one client attempting a connect during an outage; the
    /// others wait here for its outcome.
    turn: tokio::sync::Mutex<()>,
    schedule: Mutex<Schedule>,
}

struct Schedule {
    /// The next pause, before jitter.
    next: Duration,
    /// Not before this may the next attempt start; `None` while healthy.
    retry_at: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            turn: tokio::sync::Mutex::new(()),
            schedule: Mutex::new(Schedule {
                next: FIRST_BACKOFF,
                retry_at: None,
            }),
        }
    }
}

impl Backoff {
    /// When the next attempt may start, or `None` when the upstream is
    /// healthy (the last attempt succeeded, or none failed yet).
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.schedule().retry_at
    }

    /// Waits for this client's turn to attempt during an outage.
    pub(super) async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// This pool's turn if nobody else is attempting now.
    pub(super) fn try_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.turn.try_lock().ok()
    }

    /// A transient failure: the next attempt waits a jittered pause, twice
    /// as long as the one before, up to [`MAX_BACKOFF`].
    pub(super) fn failed(&self) {
        let mut schedule = self.schedule();
        let pause = schedule.next.mul_f64(rand::random_range(0.75..1.25));
        schedule.retry_at = Some(Instant::now() + pause);
        schedule.next = (schedule.next * 2).min(MAX_BACKOFF);
    }

    /// A connect succeeded: the outage is over.
    pub(super) fn succeeded(&self) {
        let mut schedule = self.schedule();
        schedule.next = FIRST_BACKOFF;
        schedule.retry_at = None;
    }

    fn schedule(&self) -> MutexGuard<'_, Schedule> {
        // Two plain fields: consistent even if a holder panicked.
        self.schedule
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

//! The pool itself: its limits, the FIFO semaphore that bounds it, and the
//! idle connections waiting for a client. `Pool::new` is in `janitor.rs`,
//! since creating a pool starts its janitor.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use super::backoff::Backoff;
use super::demand::Demand;
use super::pause::PauseGate;
use super::stats::{CloseReason, PoolStats, PoolStatsSnapshot, Traffic};
use super::{Connector, PoolLimits};

/// A server connection with the times the pool decides by.
pub(super) struct Slot<T> {
    pub(super) conn: T,
    /// When this connection stops being reused (`server_lifetime` minus jitter).
    pub(super) expires_at: Instant,
    idle_since: Instant,
}

/// State shared by the pool handle, checked-out connections and the janitor.
pub(super) struct Shared<C: Connector> {
    pub(super) connector: C,
    /// Swapped whole when the configuration is reloaded.
    pub(super) limits: ArcSwap<PoolLimits>,
    /// One permit per server connection that may be in use. Tokio's semaphore
    /// queues waiters first come first served, so late clients never overtake.
    pub(super) permits: Arc<Semaphore>,
    /// Idle connections; the most recently used at the back.
    idle: Mutex<VecDeque<Slot<C::Conn>>>,
    pub(super) stats: PoolStats,
    /// The last failed connect, while no connect has succeeded since.
    last_connect_failure: Mutex<Option<(Instant, String)>>,
    /// One reconnect back-off for the whole pool, not one per waiting client.
    pub(super) backoff: Backoff,
    pub(super) pause: PauseGate,
    /// Shared with a shrink waiting for permits in the background.
    pub(super) demand: Arc<Demand>,
    /// Set by [`Pool::close_idle`]: connections nobody waits for close.
    winding_down: AtomicBool,
}

impl<C: Connector> Shared<C> {
    /// A pool's state with no connections yet, all `max_pool_size` permits free.
    pub(super) fn new(connector: C, limits: PoolLimits) -> Arc<Shared<C>> {
        Arc::new(Shared {
            connector,
            permits: Arc::new(Semaphore::new(limits.max_size)),
            limits: ArcSwap::from_pointee(limits),
            idle: Mutex::new(VecDeque::new()),
            stats: PoolStats::default(),
            last_connect_failure: Mutex::new(None),
            backoff: Backoff::default(),
            pause: PauseGate::default(),
            demand: Arc::default(),
            winding_down: AtomicBool::new(false),
        })
    }

    pub(super) fn idle(&self) -> MutexGuard<'_, VecDeque<Slot<C::Conn>>> {
        // A panic while holding this lock leaves the deque consistent.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wraps a freshly opened connection; its lifetime is shortened by up to
    /// 10% at random so connections opened together do not expire together.
    pub(super) fn new_slot(&self, conn: C::Conn) -> Slot<C::Conn> {
        let now = Instant::now();
        let lifetime = self.limits.load().lifetime;
        let jitter = lifetime.mul_f64(rand::random_range(0.0..0.1));
        Slot {
            conn,
            expires_at: now + (lifetime - jitter),
            idle_since: now,
        }
    }

    /// Records a failed connect; a `transient` one starts or lengthens the
    /// pool's back-off.
    pub(super) fn connect_failed(&self, error: String, transient: bool) {
        self.stats.connect_failed();
        *lock(&self.last_connect_failure) = Some((Instant::now(), error));
        if transient {
            self.backoff.failed();
        }
    }

    pub(super) fn connect_succeeded(&self) {
        *lock(&self.last_connect_failure) = None;
        self.backoff.succeeded();
    }

    /// Why the last connect failed, while none has succeeded since.
    pub(super) fn last_connect_failure(&self) -> Option<String> {
        lock(&self.last_connect_failure)
            .as_ref()
            .map(|(_, error)| error.clone())
    }

    /// Why connecting failed, if it has failed since `since` without
    /// succeeding after.
    pub(super) fn connect_failure_since(&self, since: Instant) -> Option<String> {
        lock(&self.last_connect_failure)
            .as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, error)| error.clone())
    }

    pub(super) fn close(&self, slot: Slot<C::Conn>, reason: CloseReason) {
        self.connector.close(slot.conn);
        self.stats.connection_closed(reason);
    }

    pub(super) fn is_winding_down(&self) -> bool {
        self.winding_down.load(Ordering::SeqCst)
    }

    /// Puts a connection, idle since `idle_since`, back unless it has
    /// outlived `server_lifetime`, the pool is closing or paused, or it
    /// winds down and no client waits in line.
    pub(super) fn return_idle(&self, mut slot: Slot<C::Conn>, idle_since: Instant) {
        let now = Instant::now();
        let unwanted = self.is_winding_down() && !self.demand.anyone_waiting();
        let close_for = if self.permits.is_closed() || unwanted {
            Some(CloseReason::Shutdown)
        } else if self.pause.is_paused() {
            Some(CloseReason::Paused)
        } else if now >= slot.expires_at {
            Some(CloseReason::Lifetime)
        } else {
            None
        };
        if let Some(reason) = close_for {
            self.close(slot, reason);
            return;
        }
        slot.idle_since = idle_since;
        self.idle().push_back(slot);
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A pool of server connections for one (database, user).
pub struct Pool<C: Connector> {
    pub(super) shared: Arc<Shared<C>>,
}

impl<C: Connector> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: Connector> Pool<C> {
    pub fn limits(&self) -> Arc<PoolLimits> {
        self.shared.limits.load_full()
    }

    pub fn connector(&self) -> &C {
        &self.shared.connector
    }

    pub fn stats(&self) -> PoolStatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Adds what clients did through this pool to its counters.
    pub fn add_traffic(&self, traffic: &Traffic) {
        self.shared.stats.add_traffic(traffic);
    }

    /// Idle connections now.
    pub fn idle_count(&self) -> usize {
        self.shared.idle().len()
    }

    /// True when `other` is this pool (a clone of it), not merely alike.
    pub fn is_same(&self, other: &Pool<C>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// True once the pool was closed (shutdown, or a reload removed or
    /// replaced it): checkouts fail at once.
    pub fn is_closed(&self) -> bool {
        self.shared.permits.is_closed()
    }

    /// Stops handing out connections and closes the idle ones; connections
    /// in use are closed when their clients let go of them, and clients
    /// keeping one between transactions are asked for it.
    pub fn close(&self) {
        self.shared.permits.close();
        self.shared.demand.raise();
        let drained: Vec<_> = self.shared.idle().drain(..).collect();
        for slot in drained {
            self.shared.close(slot, CloseReason::Shutdown);
        }
    }

    /// Winds the pool down while its clients finish (SIGTERM, PgBouncer's
    /// "idle pools closed"): idle connections close now, kept ones are
    /// asked back, and from now on a connection given back closes unless
    /// a client waits in line for it. Checkouts still work, opening a
    /// connection when none is idle; `min_pool_size` is no longer kept.
    pub fn close_idle(&self) {
        self.shared.winding_down.store(true, Ordering::SeqCst);
        self.shared.demand.raise();
        let drained: Vec<_> = self.shared.idle().drain(..).collect();
        for slot in drained {
            self.shared.close(slot, CloseReason::Shutdown);
        }
    }

    /// Closes idle connections that have been idle at least `min_idle`,
    /// keeping `keep` of them; returns how many were closed.
    pub(super) fn reap(&self, now: Instant, keep: usize, min_idle: Option<Duration>) -> usize {
        let reaped: Vec<_> = {
            let mut idle = self.shared.idle();
            let mut reaped = Vec::new();
            let mut index = 0;
            while index < idle.len() {
                let open = self.shared.stats.open_now() - reaped.len();
                let slot = &idle[index];
                let expired = now >= slot.expires_at;
                let idle_too_long =
                    min_idle.is_some_and(|limit| now.duration_since(slot.idle_since) >= limit);
                let reason = if expired {
                    Some(CloseReason::Lifetime)
                } else if idle_too_long && open > keep {
                    Some(CloseReason::Idle)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    reaped.extend(idle.remove(index).map(|slot| (slot, reason)));
                } else {
                    index += 1;
                }
            }
            reaped
        };
        let count = reaped.len();
        for (slot, reason) in reaped {
            self.shared.close(slot, reason);
        }
        count
    }
}

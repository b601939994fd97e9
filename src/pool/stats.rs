//! Counters one pool keeps about itself: the raw material of churn-versus-reuse
//! metrics, of the admin console's SHOW POOLS, and of the tests that prove
//! upstream connections stay bounded.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Why the pool closed a server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// It outlived `server_lifetime`.
    Lifetime,
    /// It sat idle past `server_idle_timeout`.
    Idle,
    /// It broke: the server closed it, sent an error while idle, or broke
    /// the protocol.
    Error,
    /// It could not be made clean for the next client.
    ResetFailure,
    /// Its client went away (killed) without giving it back.
    Abandoned,
    /// The pool was paused from the admin console.
    Paused,
    /// churnstile is shutting down.
    Shutdown,
}

impl CloseReason {
    pub const ALL: [CloseReason; 7] = [
        CloseReason::Lifetime,
        CloseReason::Idle,
        CloseReason::Error,
        CloseReason::ResetFailure,
        CloseReason::Abandoned,
        CloseReason::Paused,
        CloseReason::Shutdown,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Lifetime => "lifetime",
            CloseReason::Idle => "idle",
            CloseReason::Error => "error",
            CloseReason::ResetFailure => "reset_failure",
            CloseReason::Abandoned => "abandoned",
            CloseReason::Paused => "paused",
            CloseReason::Shutdown => "shutdown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What clients did through a pool since it was last counted: kept by the
/// protocol in plain integers and added here in batches, so the hot path
/// touches no shared counter per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    /// Transactions finished, explicit or single-statement.
    pub transactions: u64,
    /// Queries sent: simple queries and extended-protocol Executes.
    pub queries: u64,
    /// Time those transactions took, summed.
    pub transaction_time: Duration,
    /// Bytes read from clients.
    pub bytes_received: u64,
    /// Bytes written to clients.
    pub bytes_sent: u64,
}

impl Traffic {
    pub fn is_empty(&self) -> bool {
        *self == Traffic::default()
    }
}

/// Live counters of one pool; cheap to update from any task.
#[derive(Debug, Default)]
pub(super) struct PoolStats {
    opened: AtomicU64,
    connect_failures: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    transactions: AtomicU64,
    queries: AtomicU64,
    transaction_micros: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    checkouts: AtomicU64,
    wait_timeouts: AtomicU64,
    wait_micros: AtomicU64,
    open: AtomicUsize,
    opening: AtomicUsize,
    in_use: AtomicUsize,
    /// When each client now waiting started, by ticket; the first entry is
    /// the longest waiter (tickets only grow).
    waiters: Mutex<BTreeMap<u64, Instant>>,
    next_ticket: AtomicU64,
}

/// A point-in-time copy of [`PoolStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStatsSnapshot {
    /// Server connections opened since start.
    pub opened: u64,
    /// Attempts to open a server connection that failed.
    pub connect_failures: u64,
    /// Server connections closed since start, by [`CloseReason::ALL`] order.
    pub closed_by: [u64; CloseReason::ALL.len()],
    /// Server connections handed to clients; each beyond `opened` is a reuse.
    pub checkouts: u64,
    /// Clients that gave up after `query_wait_timeout`.
    pub wait_timeouts: u64,
    /// Time clients spent waiting for a server connection, summed.
    pub wait_time: Duration,
    /// Server connections open now, idle or in use.
    pub open: usize,
    /// Server connections being opened and logged in now.
    pub opening: usize,
    /// Server connections lent to clients now.
    pub in_use: usize,
    /// Clients waiting for a server connection now.
    pub waiting: usize,
    /// How long the client that has waited longest so far has waited.
    pub longest_wait: Duration,
    /// What clients did through the pool since start.
    pub traffic: Traffic,
}

impl PoolStatsSnapshot {
    /// The two pools' counters as if they were one pool: counts and times
    /// added, the longest wait the longer of the two.
    pub fn merged(mut self, other: &PoolStatsSnapshot) -> PoolStatsSnapshot {
        self.opened += other.opened;
        self.connect_failures += other.connect_failures;
        for (closed, more) in self.closed_by.iter_mut().zip(other.closed_by) {
            *closed += more;
        }
        self.checkouts += other.checkouts;
        self.wait_timeouts += other.wait_timeouts;
        self.wait_time += other.wait_time;
        self.open += other.open;
        self.opening += other.opening;
        self.in_use += other.in_use;
        self.waiting += other.waiting;
        self.longest_wait = self.longest_wait.max(other.longest_wait);
        let (mine, theirs) = (&mut self.traffic, &other.traffic);
        mine.transactions += theirs.transactions;
        mine.queries += theirs.queries;
        mine.transaction_time += theirs.transaction_time;
        mine.bytes_received += theirs.bytes_received;
        mine.bytes_sent += theirs.bytes_sent;
        self
    }

    /// Server connections closed since start, for any reason.
    pub fn closed(&self) -> u64 {
        self.closed_by.iter().sum()
    }

    /// Server connections closed since start for `reason`.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed_by[reason.index()]
    }
}

/// A client's place among the waiters: counted from
/// [`PoolStats::wait_started`] until dropped, even when the waiting future
/// is abandoned.
pub(super) struct WaitTicket<'a> {
    stats: &'a PoolStats,
    id: u64,
    since: Instant,
}

impl Drop for WaitTicket<'_> {
    fn drop(&mut self) {
        self.stats.waiters().remove(&self.id);
        let waited = u64::try_from(self.since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.wait_micros.fetch_add(waited, Ordering::Relaxed);
    }
}

/// A server connection being opened, counted until dropped.
pub(super) struct Opening<'a>(&'a PoolStats);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.opening.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PoolStats {
    pub(super) fn connection_opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn connect_started(&self) -> Opening<'_> {
        self.opening.fetch_add(1, Ordering::Relaxed);
        Opening(self)
    }

    pub(super) fn connect_failed(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn connection_closed(&self, reason: CloseReason) {
        self.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn checked_out(&self) {
        self.checkouts.fetch_add(1, Ordering::Relaxed);
        self.in_use.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn given_back(&self) {
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn add_traffic(&self, traffic: &Traffic) {
        let micros = u64::try_from(traffic.transaction_time.as_micros()).unwrap_or(u64::MAX);
        self.transactions
            .fetch_add(traffic.transactions, Ordering::Relaxed);
        self.queries.fetch_add(traffic.queries, Ordering::Relaxed);
        self.transaction_micros.fetch_add(micros, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(traffic.bytes_received, Ordering::Relaxed);
        self.bytes_sent
            .fetch_add(traffic.bytes_sent, Ordering::Relaxed);
    }

    pub(super) fn wait_timed_out(&self) {
        self.wait_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn wait_started(&self) -> WaitTicket<'_> {
        let ticket = WaitTicket {
            stats: self,
            id: self.next_ticket.fetch_add(1, Ordering::Relaxed),
            since: Instant::now(),
        };
        self.waiters().insert(ticket.id, ticket.since);
        ticket
    }

    pub(super) fn open_now(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Instant>> {
        // The map stays consistent whatever panicked while holding it.
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn snapshot(&self) -> PoolStatsSnapshot {
        let (waiting, longest_wait) = {
            let waiters = self.waiters();
            let longest = waiters.values().next().map(Instant::elapsed);
            (waiters.len(), longest.unwrap_or_default())
        };
        PoolStatsSnapshot {
            opened: self.opened.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            closed_by: self.closed.each_ref().map(|n| n.load(Ordering::Relaxed)),
            checkouts: self.checkouts.load(Ordering::Relaxed),
            wait_timeouts: self.wait_timeouts.load(Ordering::Relaxed),
            wait_time: Duration::from_micros(self.wait_micros.load(Ordering::Relaxed)),
            open: self.open.load(Ordering::Relaxed),
            opening: self.opening.load(Ordering::Relaxed),
            in_use: self.in_use.load(Ordering::Relaxed),
            waiting,
            longest_wait,
            traffic: Traffic {
                transactions: self.transactions.load(Ordering::Relaxed),
                queries: self.queries.load(Ordering::Relaxed),
                transaction_time: Duration::from_micros(
                    self.transaction_micros.load(Ordering::Relaxed),
                ),
                bytes_received: self.bytes_received.load(Ordering::Relaxed),
                bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            },
        }
    }
}

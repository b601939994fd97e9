//! Logged-in clients: one entry each, from login to exit, with its state
//! (idle, waiting for a server connection, active on one) and a kill switch
//! for the admin console's KILL. The registry's lock is taken at login and
//! exit only; state changes at attach and release are atomic stores.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::Endpoint;
use crate::stream::Stream;

/// Where a logged-in client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    /// Logged in, running nothing (between transactions). Under
    /// transaction pooling it may still keep its server connection (its
    /// `server_pid`) until another client needs it.
    Idle,
    /// Waiting in line for a server connection.
    Waiting,
    /// Using a server connection: in a transaction, or holding it for the
    /// session (session mode, or pinned).
    Active,
}

impl ClientState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Waiting => "waiting",
            ClientState::Active => "active",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => ClientState::Waiting,
            2 => ClientState::Active,
            _ => ClientState::Idle,
        }
    }
}

/// What the admin console knows about one client.
#[derive(Debug)]
pub struct ClientEntry {
    pub id: u64,
    /// `postgres` or `mysql`, as metrics label it.
    protocol: &'static str,
    pub database: String,
    pub user: String,
    pub application_name: String,
    pub peer: Endpoint,
    pub local: Endpoint,
    /// The TLS version in use (`TLSv1.3`); `None` in plaintext.
    pub tls: Option<&'static str>,
    pub connected_at: SystemTime,
    started: Instant,
    state: AtomicU8,
    /// Microseconds since the Unix epoch of the last state change.
    changed_at_us: AtomicU64,
    /// Backend PID of the server connection it holds; 0 when none.
    server_pid: AtomicI32,
    kill: CancellationToken,
}

impl ClientEntry {
    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// When it last changed state (got, asked for or gave back a server
    /// connection), or logged in.
    pub fn changed_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
            + std::time::Duration::from_micros(self.changed_at_us.load(Ordering::Relaxed))
    }

    /// Backend PID of its server connection, when it holds one.
    pub fn server_pid(&self) -> Option<i32> {
        Some(self.server_pid.load(Ordering::Relaxed)).filter(|pid| *pid != 0)
    }

    fn set(&self, state: ClientState, server_pid: i32) {
        self.server_pid.store(server_pid, Ordering::Relaxed);
        self.changed_at_us.store(now_us(), Ordering::Relaxed);
        self.state.store(state as u8, Ordering::Relaxed);
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

#[derive(Debug, Default)]
struct Clients {
    live: HashMap<u64, Arc<ClientEntry>>,
    /// Logins since start per (database, user): the clients a pool served.
    logins: HashMap<(String, String), u64>,
    next_id: u64,
}

/// Every logged-in client.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    clients: Mutex<Clients>,
    /// `log_connections` and `log_disconnections`.
    log_logins: AtomicBool,
    log_exits: AtomicBool,
}

impl ClientRegistry {
    fn lock(&self) -> MutexGuard<'_, Clients> {
        // Every update leaves the maps consistent, even one that panicked.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether logins and exits are logged (`log_connections`,
    /// `log_disconnections`).
    pub fn set_logging(&self, logins: bool, exits: bool) {
        self.log_logins.store(logins, Ordering::Relaxed);
        self.log_exits.store(exits, Ordering::Relaxed);
    }

    /// Records a client of `protocol` that has just logged in to
    /// `database` as `user`; it leaves the registry when the returned handle
    /// is dropped.
    pub fn logged_in(
        self: &Arc<Self>,
        protocol: &'static str,
        database: &str,
        user: &str,
        application_name: &str,
        stream: &Stream,
    ) -> LiveClient {
        let mut clients = self.lock();
        clients.next_id += 1;
        let entry = Arc::new(ClientEntry {
            id: clients.next_id,
            protocol,
            database: database.to_owned(),
            user: user.to_owned(),
            application_name: application_name.to_owned(),
            peer: Endpoint::peer(stream),
            local: Endpoint::local(stream),
            tls: stream.tls_version(),
            connected_at: SystemTime::now(),
            started: Instant::now(),
            state: AtomicU8::new(ClientState::Idle as u8),
            changed_at_us: AtomicU64::new(now_us()),
            server_pid: AtomicI32::new(0),
            kill: CancellationToken::new(),
        });
        clients.live.insert(entry.id, Arc::clone(&entry));
        *clients
            .logins
            .entry((entry.database.clone(), entry.user.clone()))
            .or_default() += 1;
        if self.log_logins.load(Ordering::Relaxed) {
            tracing::info!(
                protocol,
                db = %entry.database,
                user = %entry.user,
                addr = %entry.peer.addr,
                port = entry.peer.port,
                id = entry.id,
                "client connected"
            );
        }
        LiveClient {
            registry: Arc::clone(self),
            entry,
            reason: "client closed the connection",
        }
    }

    /// Every logged-in client, oldest first.
    pub fn list(&self) -> Vec<Arc<ClientEntry>> {
        let mut list: Vec<_> = self.lock().live.values().cloned().collect();
        list.sort_by_key(|entry| entry.id);
        list
    }

    /// Logins since start per (database, user).
    pub fn logins(&self) -> HashMap<(String, String), u64> {
        self.lock().logins.clone()
    }

    /// Disconnects every client of `database`; returns how many there were.
    pub fn kill_database(&self, database: &str) -> usize {
        let clients = self.lock();
        let mut killed = 0;
        for entry in clients.live.values() {
            if entry.database == database {
                entry.kill.cancel();
                killed += 1;
            }
        }
        killed
    }
}

/// A logged-in client's own handle on its registry entry.
pub struct LiveClient {
    registry: Arc<ClientRegistry>,
    entry: Arc<ClientEntry>,
    /// Why the session ended, for the `log_disconnections` line.
    reason: &'static str,
}

impl LiveClient {
    pub fn entry(&self) -> &ClientEntry {
        &self.entry
    }

    /// The client asked for a server connection and is waiting for one.
    pub fn waiting(&self) {
        self.entry.set(ClientState::Waiting, 0);
    }

    /// The client got the server connection whose backend PID this is.
    pub fn active(&self, server_pid: i32) {
        self.entry.set(ClientState::Active, server_pid);
    }

    /// The client gave its server connection back.
    pub fn idle(&self) {
        self.entry.set(ClientState::Idle, 0);
    }

    /// The client finished its transaction and keeps its server connection,
    /// idle, until another client needs it.
    pub fn idle_keeping(&self, server_pid: i32) {
        self.entry.set(ClientState::Idle, server_pid);
    }

    /// Why the session is ending, when not because the client left.
    pub fn ending(&mut self, reason: &'static str) {
        self.reason = reason;
    }

    /// Completes when the admin console kills this client.
    pub async fn killed(&self) {
        self.entry.kill.cancelled().await;
    }

    /// The switch the admin console's KILL throws, for a session that
    /// watches it itself.
    pub fn kill_switch(&self) -> CancellationToken {
        self.entry.kill.clone()
    }
}

impl Drop for LiveClient {
    fn drop(&mut self) {
        self.registry.lock().live.remove(&self.entry.id);
        if self.registry.log_exits.load(Ordering::Relaxed) {
            let entry = &self.entry;
            tracing::info!(
                protocol = entry.protocol,
                db = %entry.database,
                user = %entry.user,
                addr = %entry.peer.addr,
                port = entry.peer.port,
                id = entry.id,
                duration = ?entry.started.elapsed(),
                reason = self.reason,
                "client disconnected"
            );
        }
        crate::metrics::client_session_ended(
            self.entry.protocol,
            &self.entry.database,
            &self.entry.user,
            self.entry.started.elapsed(),
        );
    }
}

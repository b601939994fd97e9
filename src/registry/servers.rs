//! Open server connections: one entry each, from a successful upstream login
//! to the close, keyed by the backend's process ID and the upstream address
//! (unique among live connections, and what clients link to).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::Endpoint;

/// What the admin console knows about one server connection.
#[derive(Debug, Clone)]
pub struct ServerEntry {
    /// The pool it belongs to: churnstile's database and user names.
    pub database: String,
    pub user: String,
    /// The upstream it is connected to.
    pub upstream: Endpoint,
    /// Churnstile's end of it.
    pub local: Endpoint,
    pub backend_pid: i32,
    pub connected_at: SystemTime,
    /// The TLS version in use (`TLSv1.3`); `None` in plaintext.
    pub tls: Option<&'static str>,
}

type Key = (String, u16, i32);

/// Every open server connection.
#[derive(Debug, Default)]
pub struct ServerRegistry {
    servers: Mutex<HashMap<Key, Arc<ServerEntry>>>,
}

fn key(entry: &ServerEntry) -> Key {
    (
        entry.upstream.addr.clone(),
        entry.upstream.port,
        entry.backend_pid,
    )
}

impl ServerRegistry {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<ServerEntry>>> {
        // Single inserts and removes leave the map consistent.
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn opened(&self, entry: ServerEntry) {
        self.lock().insert(key(&entry), Arc::new(entry));
    }

    pub fn closed(&self, upstream: &Endpoint, backend_pid: i32) {
        self.lock()
            .remove(&(upstream.addr.clone(), upstream.port, backend_pid));
    }

    /// Every open server connection, oldest first.
    pub fn list(&self) -> Vec<Arc<ServerEntry>> {
        let mut list: Vec<_> = self.lock().values().cloned().collect();
        list.sort_by_key(|entry| entry.connected_at);
        list
    }
}

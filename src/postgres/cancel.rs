//! Cancel routing. Each client gets churnstile's own BackendKeyData; a
//! CancelRequest carrying it is forwarded, over a fresh upstream connection,
//! to whichever server connection serves that client at that moment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use super::backend::{BackendKey, UpstreamTarget, send_cancel_request};

/// Bound on forwarding one cancel request.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// The server connection a client is attached to, as a cancel needs it.
#[derive(Debug, Clone)]
pub(super) struct CancelTarget {
    pub(super) upstream: Arc<UpstreamTarget>,
    pub(super) key: BackendKey,
}

/// A client's current target. Forwarding a cancel holds the read lock until
/// the server has taken the request, and a session takes the write lock to
/// change targets, so a cancel can never reach the server connection's next
/// client.
type Slot = Arc<tokio::sync::RwLock<Option<CancelTarget>>>;

/// All clients' cancel keys, shared by every session.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    clients: Mutex<HashMap<(i32, i32), Slot>>,
}

/// A client's entry in the registry; removed when dropped.
pub(super) struct CancelHandle {
    registry: Arc<CancelRegistry>,
    pub(super) key: BackendKey,
    slot: Slot,
}

impl CancelRegistry {
    /// Issues a fresh, unique key for a client.
    pub(super) fn register(self: &Arc<Self>) -> CancelHandle {
        let slot: Slot = Arc::default();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let key = loop {
            let key = BackendKey {
                process_id: rand::random_range(1..i32::MAX),
                secret_key: rand::random(),
            };
            if !clients.contains_key(&(key.process_id, key.secret_key)) {
                break key;
            }
        };
        clients.insert((key.process_id, key.secret_key), Arc::clone(&slot));
        CancelHandle {
            registry: Arc::clone(self),
            key,
            slot,
        }
    }

    /// Forwards a cancel for the given key; unknown keys and clients that hold
    /// no server connection now are ignored, as PostgreSQL does.
    pub(super) async fn cancel(&self, process_id: i32, secret_key: i32) {
        let slot = {
            let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            clients.get(&(process_id, secret_key)).cloned()
        };
        let Some(slot) = slot else {
            tracing::debug!(process_id, "cancel request with unknown key ignored");
            return;
        };
        let target = slot.read().await;
        let Some(target) = target.as_ref() else {
            return;
        };
        let sent = tokio::time::timeout(
            CANCEL_TIMEOUT,
            send_cancel_request(&target.upstream, &target.key),
        )
        .await;
        if let Err(error) = sent.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())) {
            tracing::warn!(upstream = %target.upstream.describe(), %error, "could not forward cancel request");
        }
    }

    /// Number of registered clients.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CancelHandle {
    /// Records the server connection the client is attached to (or none),
    /// once cancels in flight to the previous one have been delivered.
    pub(super) async fn attach(&self, target: Option<CancelTarget>) {
        *self.slot.write().await = target;
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        let mut clients = self
            .registry
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        clients.remove(&(self.key.process_id, self.key.secret_key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_removed_on_drop() {
        let registry = Arc::new(CancelRegistry::default());
        let handles: Vec<_> = (0..100).map(|_| registry.register()).collect();
        assert_eq!(registry.len(), 100);
        assert!(handles.iter().all(|h| h.key.process_id > 0));
        drop(handles);
        assert!(registry.is_empty());
    }
}

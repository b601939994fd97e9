//! `KILL [QUERY | CONNECTION] id` with churnstile's connection ids: the
//! registry of connected clients by id, and delivering a kill to the server
//! connection serving the target client. A client's server connection is
//! not switched while a kill for it is being delivered, so a kill can never
//! reach another client's query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::backend::{ServerConn, UpstreamTarget, query_payload};
use super::sql::Kill;
use super::wire::errors;
use super::wire::response::ErrPacket;

/// The server connection serving a client right now.
#[derive(Debug, Clone)]
pub(super) struct Serving {
    pub(super) target: Arc<UpstreamTarget>,
    pub(super) thread_id: u32,
}

/// Held by the session: where kills for it go.
#[derive(Clone)]
pub(super) struct ClientHandle {
    /// Cancelled by `KILL CONNECTION`.
    pub(super) killed: CancellationToken,
    /// Locked while a kill is delivered and while the session switches.
    pub(super) serving: Arc<tokio::sync::Mutex<Option<Serving>>>,
}

struct Entry {
    user: String,
    handle: ClientHandle,
}

/// Connected clients by churnstile connection id.
#[derive(Default)]
pub(super) struct KillRegistry {
    clients: Mutex<HashMap<u32, Entry>>,
}

impl KillRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Entry>> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers client `id`; `killed` ends its session (the same switch
    /// the admin console's KILL throws).
    pub(super) fn register(&self, id: u32, user: &str, killed: CancellationToken) -> ClientHandle {
        let handle = ClientHandle {
            killed,
            serving: Arc::default(),
        };
        self.lock().insert(
            id,
            Entry {
                user: user.to_owned(),
                handle: handle.clone(),
            },
        );
        handle
    }

    /// The client logged in again as `user` (COM_CHANGE_USER), with a new
    /// kill switch.
    pub(super) fn relogged(&self, id: u32, user: &str, killed: CancellationToken) {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.user = user.to_owned();
            entry.handle.killed = killed;
        }
    }

    pub(super) fn unregister(&self, id: u32) {
        self.lock().remove(&id);
    }

    pub(super) fn contains(&self, id: u32) -> bool {
        self.lock().contains_key(&id)
    }

    /// Carries out `kill` for a client logged in as `user`; the error is
    /// what the killing client is told.
    pub(super) async fn kill(&self, user: &str, kill: Kill) -> Result<(), ErrPacket> {
        let handle = match self.lock().get(&kill.id) {
            None => None,
            Some(entry) if entry.user != user => {
                return Err(ErrPacket::new(
                    errors::KILL_DENIED,
                    format!("You are not owner of thread {}", kill.id),
                ));
            }
            Some(entry) => Some(entry.handle.clone()),
        };
        let Some(handle) = handle else {
            return Err(ErrPacket::new(
                errors::NO_SUCH_THREAD,
                format!("Unknown thread id: {}", kill.id),
            ));
        };
        {
            let serving = handle.serving.lock().await;
            if let Some(serving) = serving.as_ref() {
                kill_query(serving).await;
            }
        }
        if !kill.query_only {
            handle.killed.cancel();
        }
        Ok(())
    }
}

/// Stops whatever the server connection runs, from a connection of its own.
async fn kill_query(serving: &Serving) {
    let sql = format!("KILL QUERY {}", serving.thread_id);
    match ServerConn::connect(&serving.target).await {
        Ok(mut conn) => {
            if let Ok(Err(error)) | Err(error) = conn
                .run(&query_payload(&sql))
                .await
                .map_err(|e| ErrPacket::new(errors::UNKNOWN_ERROR, e.to_string()))
            {
                tracing::warn!(upstream = %serving.target.describe(), thread = serving.thread_id, error = %error.message, "could not kill query upstream");
            }
            conn.quit();
        }
        Err(error) => {
            tracing::warn!(upstream = %serving.target.describe(), %error, "could not connect upstream to kill a query");
        }
    }
}

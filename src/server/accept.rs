//! Accept loops: one per listener, handing each client to the PostgreSQL
//! service while enforcing `max_client_conn`, and backing off (never
//! spinning) when the process runs out of file descriptors.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use crate::postgres::messages::sqlstate;
use crate::postgres::service::PgService;
use crate::postgres::startup::refuse_connection;
use crate::stream::Stream;

/// Pause after an accept error such as EMFILE before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A bound listening socket of either kind.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                Ok((Stream::tcp(stream)?, peer.to_string()))
            }
            Listener::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok((Stream::Unix(stream), "unix socket".to_owned()))
            }
        }
    }
}

/// Accepts clients until shutdown. Each client holds one of the
/// `client_slots` permits (`max_client_conn`) for as long as it is connected.
pub async fn accept_loop(
    listener: Listener,
    service: Arc<PgService>,
    client_slots: Arc<Semaphore>,
) {
    loop {
        let accepted = tokio::select! {
            _ = service.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        match Arc::clone(&client_slots).try_acquire_owned() {
            Ok(slot) => {
                let service = Arc::clone(&service);
                tokio::spawn(async move {
                    service.serve(stream, peer).await;
                    drop(slot);
                });
            }
            Err(_) => {
                tracing::warn!(%peer, "max_client_conn reached; refusing client");
                tokio::spawn(refuse_connection(
                    stream,
                    sqlstate::TOO_MANY_CONNECTIONS,
                    "no more connections allowed (max_client_conn)",
                ));
            }
        }
    }
}

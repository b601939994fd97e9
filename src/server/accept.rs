//! Accept loops: one per listener, handing each client to the core in the
//! listener's protocol while enforcing `max_client_conn`, and backing off (never
//! spinning) when the process runs out of file descriptors, counting each
//! time it does.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustix::io::Errno;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use crate::config::Protocol;
use crate::proxy::Proxy;
use crate::ratelimit::{Suppressed, WARNINGS};
use crate::stream::Stream;

/// Pause after an accept error such as EMFILE before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

fn is_fd_exhaustion(error: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(error),
        Some(Errno::MFILE | Errno::NFILE)
    )
}

/// A bound listening socket of either kind.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// The bound address of a TCP listener.
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }

    async fn accept(&self) -> std::io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                Ok((Stream::accepted_tcp(stream), peer.to_string()))
            }
            Listener::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok((Stream::Unix(stream), "unix socket".to_owned()))
            }
        }
    }
}

/// Accepts clients of `protocol` until a shutdown starts. Each client holds one of
/// the `client_slots` permits (`max_client_conn`) for as long as it is
/// connected, admin console sessions included.
pub async fn accept_loop(
    listener: Listener,
    protocol: Protocol,
    proxy: Arc<Proxy>,
    client_slots: Arc<Semaphore>,
) {
    // Failed accepts in a row for lack of descriptors: logged when the run
    // starts and when it ends, not on every retry.
    let mut exhausted_streak: u64 = 0;
    loop {
        let accepted = tokio::select! {
            _ = proxy.draining.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_fd_exhaustion(&error) => {
                crate::metrics::accept_fd_exhausted();
                if exhausted_streak == 0 {
                    tracing::warn!(
                        %error,
                        "out of file descriptors: new clients wait in the listen backlog, \
                         connected clients are served; retrying every {ACCEPT_BACKOFF:?}"
                    );
                }
                exhausted_streak += 1;
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(error) => {
                if let Some(suppressed) = WARNINGS.check("accept failed", "") {
                    tracing::warn!(%error, "accept failed; backing off{}", Suppressed(suppressed));
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if exhausted_streak > 0 {
            tracing::info!(
                failed = exhausted_streak,
                since_start = crate::metrics::fd_exhausted_accepts(),
                "accepting again after running out of file descriptors"
            );
            exhausted_streak = 0;
        }
        crate::metrics::client_accepted();
        match Arc::clone(&client_slots).try_acquire_owned() {
            Ok(slot) => {
                let proxy = Arc::clone(&proxy);
                tokio::spawn(async move {
                    if let Some(console) = proxy.serve(protocol, stream, peer).await {
                        crate::admin::serve(&proxy, console).await;
                    }
                    drop(slot);
                });
            }
            Err(_) => {
                if let Some(suppressed) = WARNINGS.check("max_client_conn reached", "") {
                    tracing::warn!(%peer, "max_client_conn reached; refusing client{}", Suppressed(suppressed));
                }
                crate::metrics::client_rejected(crate::metrics::Rejection::MaxClientConn);
                tokio::spawn(Proxy::refuse_too_many(protocol, stream));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emfile_and_enfile_are_fd_exhaustion() {
        for (errno, expected) in [
            (Errno::MFILE, true),
            (Errno::NFILE, true),
            (Errno::CONNABORTED, false),
        ] {
            let error = io::Error::from_raw_os_error(errno.raw_os_error());
            assert_eq!(is_fd_exhaustion(&error), expected, "{error}");
        }
    }
}

//! What an accept loop needs from a protocol's service: a way to serve one
//! accepted client, a way to refuse one politely when `max_client_conn` is
//! reached, and the shutdown signal that stops accepting.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::stream::Stream;

/// A protocol's client-facing side (PostgreSQL or MySQL).
pub trait Frontend: Send + Sync + 'static {
    /// Cancelled when the proxy shuts down.
    fn shutdown(&self) -> &CancellationToken;

    /// Takes one accepted client from its first byte to its close.
    fn serve(self: Arc<Self>, stream: Stream, peer: String) -> impl Future<Output = ()> + Send;

    /// Tells a client over `max_client_conn` so, in the protocol's own words,
    /// and closes it.
    fn refuse_too_many(stream: Stream) -> impl Future<Output = ()> + Send;
}

//! The protocol-agnostic connection pool: a bounded set of server connections
//! per (database, user), handed to waiting clients strictly first come first
//! served. A protocol plugs in through [`Connector`]; the pool knows nothing
//! about PostgreSQL or MySQL.

mod backoff;
mod checkout;
mod demand;
mod janitor;
mod lease;
mod limits;
mod pause;
mod pins;
mod resize;
mod set;
mod shared;
mod stats;

pub use checkout::CheckoutError;
pub use lease::{KeepOrGiveBack, Lease};
pub use limits::PoolLimits;
pub use pause::PoolControl;
pub use pins::{PinCounters, PinnedClient};
pub use set::{PoolIdentity, PoolSet, Wanted};
pub use shared::Pool;
pub use stats::{CloseReason, PoolStatsSnapshot, Traffic};

use std::future::Future;

/// What a protocol supplies so the pool can manage its server connections.
pub trait Connector: Send + Sync + 'static {
    type Conn: Send + 'static;
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens and logs in one server connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, Self::Error>> + Send;

    /// Cheap check, without waiting, that an idle connection can be handed
    /// out (the server has not closed it or sent a fatal error meanwhile).
    fn is_healthy(&self, conn: &mut Self::Conn) -> bool;

    /// Closes a connection politely and at once, without waiting.
    fn close(&self, conn: Self::Conn);

    /// True when a connect failure may go away by itself (the server is
    /// unreachable or starting up), so the pool retries it.
    fn is_transient(&self, error: &Self::Error) -> bool;
}

#[cfg(test)]
mod tests;

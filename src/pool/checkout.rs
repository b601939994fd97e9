//! Handing a connection to a client: waiting in line for a permit, reusing an
//! idle connection or opening one, and giving it back (or closing it).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use super::shared::{Shared, Slot};
use super::{Connector, Pool};

/// Why a client got no server connection.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError<E: std::error::Error + 'static> {
    #[error("no server connection became free within query_wait_timeout ({0:?})")]
    WaitTimeout(Duration),
    #[error("could not connect to the server: {0}")]
    Connect(#[source] E),
    #[error("connecting to the server took longer than server_connect_timeout ({0:?})")]
    ConnectTimeout(Duration),
    #[error("the pool is shutting down")]
    Closed,
}

/// A server connection lent to one client. Give it back with
/// [`Pooled::release`] once it is idle and reset; dropping it closes the
/// connection, so a connection in an unknown state is never reused.
pub struct Pooled<C: Connector> {
    slot: Option<Slot<C::Conn>>,
    shared: Arc<Shared<C>>,
    /// Held for as long as the client has the connection.
    _permit: OwnedSemaphorePermit,
    reused: bool,
}

impl<C: Connector> Pooled<C> {
    pub fn conn(&mut self) -> &mut C::Conn {
        &mut self.slot_mut().conn
    }

    /// True when this connection served an earlier client.
    pub fn was_reused(&self) -> bool {
        self.reused
    }

    fn slot_mut(&mut self) -> &mut Slot<C::Conn> {
        // The slot is only taken out by methods that consume `self`.
        self.slot
            .as_mut()
            .expect("pooled connection already given back")
    }

    /// Returns the connection to the pool (or closes it when it has outlived
    /// `server_lifetime`). Only for connections that are idle and reset.
    pub fn release(mut self) {
        if let Some(slot) = self.slot.take() {
            self.shared.return_idle(slot);
        }
    }

    /// Closes the connection instead of reusing it.
    pub fn discard(mut self) {
        if let Some(slot) = self.slot.take() {
            self.shared.close(slot);
        }
    }
}

impl<C: Connector> Drop for Pooled<C> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.shared.close(slot);
        }
    }
}

impl<C: Connector> Pool<C> {
    /// Waits in line (at most `wait`, forever when `None`) for a connection.
    pub async fn checkout(
        &self,
        wait: Option<Duration>,
    ) -> Result<Pooled<C>, CheckoutError<C::Error>> {
        let shared = &self.shared;
        shared.stats.wait_started();
        let acquire = Arc::clone(&shared.permits).acquire_owned();
        let permit = match wait {
            Some(limit) => tokio::time::timeout(limit, acquire).await.map_err(|_| {
                shared.stats.wait_timed_out();
                CheckoutError::WaitTimeout(limit)
            }),
            None => Ok(acquire.await),
        };
        shared.stats.wait_ended();
        let permit = permit?.map_err(|_| CheckoutError::Closed)?;

        while let Some(mut slot) = shared.idle().pop_back() {
            if shared.connector.is_healthy(&mut slot.conn)
                && slot.expires_at > std::time::Instant::now()
            {
                shared.stats.checked_out();
                return Ok(Pooled {
                    slot: Some(slot),
                    shared: Arc::clone(shared),
                    _permit: permit,
                    reused: true,
                });
            }
            shared.close(slot);
        }

        let slot = self.open().await?;
        shared.stats.checked_out();
        Ok(Pooled {
            slot: Some(slot),
            shared: Arc::clone(shared),
            _permit: permit,
            reused: false,
        })
    }

    /// Opens one connection within `server_connect_timeout`. The caller holds
    /// a permit, which keeps the pool within its size.
    pub(super) async fn open(&self) -> Result<Slot<C::Conn>, CheckoutError<C::Error>> {
        let shared = &self.shared;
        let limit = shared.limits.connect_timeout;
        match tokio::time::timeout(limit, shared.connector.connect()).await {
            Ok(Ok(conn)) => {
                shared.stats.connection_opened();
                Ok(shared.new_slot(conn))
            }
            Ok(Err(error)) => {
                shared.stats.connect_failed();
                Err(CheckoutError::Connect(error))
            }
            Err(_) => {
                shared.stats.connect_failed();
                Err(CheckoutError::ConnectTimeout(limit))
            }
        }
    }
}

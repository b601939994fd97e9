//! Handing a connection to a client: waiting in line for a permit, reusing an
//! idle connection or opening one, and giving it back (or closing it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::shared::{Shared, Slot};
use super::{CloseReason, Connector, Pool, Traffic};

/// First pause before retrying a failed connect; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between connect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

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
    #[error(
        "no server connection within query_wait_timeout ({waited:?}): the upstream is unavailable ({last_error})"
    )]
    UpstreamDown {
        waited: Duration,
        last_error: String,
    },
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
    /// Since when the client has kept it idle between uses (lazy release):
    /// given back, it has been idle since then, not since the release.
    kept_idle_since: Option<Instant>,
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

    /// True once the connection has outlived `server_lifetime`: given back,
    /// it is closed.
    pub fn is_expired(&self) -> bool {
        self.slot
            .as_ref()
            .is_some_and(|slot| Instant::now() >= slot.expires_at)
    }

    /// The client keeps the connection, idle, until the pool wants it back
    /// (see [`Pool::connection_wanted_back`]). Returns when it should go
    /// back even unasked, as an idle one in the pool would be closed: when
    /// its lifetime ends, or once it has been idle `server_idle_timeout`.
    pub fn keep_idle(&mut self) -> Instant {
        let now = Instant::now();
        self.kept_idle_since = Some(now);
        let expires_at = self.slot_mut().expires_at;
        match self.shared.limits.load().idle_timeout {
            Some(limit) => expires_at.min(now + limit),
            None => expires_at,
        }
    }

    /// The client uses the connection it kept idle again.
    pub fn reuse_kept(&mut self) {
        self.kept_idle_since = None;
    }

    /// Returns the connection to the pool (or closes it when it has outlived
    /// `server_lifetime`). Only for connections that are idle and reset.
    pub fn release(mut self) {
        if let Some(slot) = self.slot.take() {
            let idle_since = self.kept_idle_since.unwrap_or_else(Instant::now);
            self.shared.return_idle(slot, idle_since);
        }
    }

    /// Closes the connection instead of reusing it, counted under `reason`.
    pub fn discard(mut self, reason: CloseReason) {
        if let Some(slot) = self.slot.take() {
            self.shared.close(slot, reason);
        }
    }

    /// Adds what the client did on this connection to the pool's counters.
    pub fn add_traffic(&self, traffic: &Traffic) {
        self.shared.stats.add_traffic(traffic);
    }
}

impl<C: Connector> Drop for Pooled<C> {
    fn drop(&mut self) {
        // Runs after `release` and `discard` too: the one place a loan ends.
        self.shared.stats.given_back();
        if let Some(slot) = self.slot.take() {
            self.shared.close(slot, CloseReason::Abandoned);
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
        let started = Instant::now();
        // Fast path: a free permit and an open pool need no waiting machinery.
        // A free permit means nobody is in line (tokio hands released permits
        // to waiters first), so this never overtakes a waiting client.
        if !shared.pause.is_paused()
            && let Ok(permit) = Arc::clone(&shared.permits).try_acquire_owned()
        {
            return self.lend(permit, started, wait).await;
        }
        let ticket = shared.stats.wait_started();
        // The line is the semaphore's; a paused pool holds its head there.
        let admitted = async {
            let permit = {
                // Asks a client keeping a connection between transactions
                // for it; the semaphore hands it to the head of the line.
                let _in_line = shared.demand.wait_in_line();
                Arc::clone(&shared.permits).acquire_owned().await
            };
            shared.pause.passed().await;
            permit.map_err(|_| CheckoutError::Closed)
        };
        let permit = match wait {
            Some(limit) => tokio::time::timeout(limit, admitted)
                .await
                .unwrap_or_else(|_| {
                    shared.stats.wait_timed_out();
                    Err(match shared.connect_failure_since(started) {
                        Some(last_error) => CheckoutError::UpstreamDown {
                            waited: limit,
                            last_error,
                        },
                        None => CheckoutError::WaitTimeout(limit),
                    })
                }),
            None => admitted.await,
        };
        drop(ticket);
        let permit = permit?;
        self.lend(permit, started, wait).await
    }

    /// With a permit in hand: reuses an idle connection that is healthy and
    /// within its lifetime, or opens one.
    async fn lend(
        &self,
        permit: OwnedSemaphorePermit,
        started: Instant,
        wait: Option<Duration>,
    ) -> Result<Pooled<C>, CheckoutError<C::Error>> {
        let shared = &self.shared;
        while let Some(mut slot) = shared.idle().pop_back() {
            let reason = if slot.expires_at <= Instant::now() {
                CloseReason::Lifetime
            } else if !shared.connector.is_healthy(&mut slot.conn) {
                CloseReason::Error
            } else {
                shared.stats.checked_out();
                return Ok(Pooled {
                    slot: Some(slot),
                    shared: Arc::clone(shared),
                    _permit: permit,
                    reused: true,
                    kept_idle_since: None,
                });
            };
            shared.close(slot, reason);
        }

        let slot = self
            .open_retrying(wait.map(|limit| started + limit))
            .await?;
        shared.stats.checked_out();
        Ok(Pooled {
            slot: Some(slot),
            shared: Arc::clone(shared),
            _permit: permit,
            reused: false,
            kept_idle_since: None,
        })
    }

    /// Opens a connection, retrying transient failures (unreachable, timed
    /// out, server starting up) with jittered exponential back-off until
    /// `deadline` (the client's `query_wait_timeout`), so a restarting or
    /// flapping upstream costs clients a short wait instead of an error.
    async fn open_retrying(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Slot<C::Conn>, CheckoutError<C::Error>> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let error = match self.open().await {
                Ok(slot) => return Ok(slot),
                Err(error) => error,
            };
            let transient = match &error {
                CheckoutError::Connect(cause) => self.shared.connector.is_transient(cause),
                CheckoutError::ConnectTimeout(_) => true,
                _ => false,
            };
            let pause = backoff.mul_f64(rand::random_range(0.75..1.25));
            let retry =
                transient && deadline.is_some_and(|deadline| Instant::now() + pause < deadline);
            if !retry {
                return Err(error);
            }
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Opens one connection within `server_connect_timeout`. The caller holds
    /// a permit, which keeps the pool within its size.
    pub(super) async fn open(&self) -> Result<Slot<C::Conn>, CheckoutError<C::Error>> {
        let shared = &self.shared;
        let limit = shared.limits.load().connect_timeout;
        let opening = shared.stats.connect_started();
        let connected = tokio::time::timeout(limit, shared.connector.connect()).await;
        drop(opening);
        match connected {
            Ok(Ok(conn)) => {
                shared.connect_succeeded();
                shared.stats.connection_opened();
                Ok(shared.new_slot(conn))
            }
            Ok(Err(error)) => {
                shared.connect_failed(error.to_string());
                Err(CheckoutError::Connect(error))
            }
            Err(_) => {
                let error = CheckoutError::<C::Error>::ConnectTimeout(limit);
                shared.connect_failed(error.to_string());
                Err(error)
            }
        }
    }
}

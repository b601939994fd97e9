//! Handing a connection to a client: waiting in line for a permit (first
//! come first served, within a deadline), then reusing an idle connection
//! or opening one. What the client holds meanwhile is a [`Lease`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::lease::Lease;
use super::shared::Slot;
use super::{CloseReason, Connector, Pool};
use crate::metrics::{self, Rejection};

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

impl<E: std::error::Error + 'static> CheckoutError<E> {
    /// Counts the client as refused, under this failure's reason; each
    /// protocol then tells its client in its own words.
    pub fn count_rejection(&self) {
        metrics::client_rejected(match self {
            CheckoutError::WaitTimeout(_) => Rejection::QueryWaitTimeout,
            CheckoutError::UpstreamDown { .. } => Rejection::UpstreamDown,
            CheckoutError::Closed => Rejection::Shutdown,
            CheckoutError::Connect(_) | CheckoutError::ConnectTimeout(_) => {
                Rejection::UpstreamError
            }
        });
    }
}

impl<C: Connector> Pool<C> {
    /// Waits in line (at most `wait`, forever when `None`) for a connection.
    pub async fn checkout(
        &self,
        wait: Option<Duration>,
    ) -> Result<Lease<C>, CheckoutError<C::Error>> {
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
    ) -> Result<Lease<C>, CheckoutError<C::Error>> {
        let shared = &self.shared;
        while let Some(mut slot) = shared.idle().pop_back() {
            let reason = if slot.expires_at <= Instant::now() {
                CloseReason::Lifetime
            } else if !shared.connector.is_healthy(&mut slot.conn) {
                CloseReason::Error
            } else {
                shared.stats.checked_out();
                return Ok(Lease::new(slot, Arc::clone(shared), permit, true));
            };
            shared.close(slot, reason);
        }

        let slot = self
            .open_retrying(wait.map(|limit| started + limit))
            .await?;
        shared.stats.checked_out();
        Ok(Lease::new(slot, Arc::clone(shared), permit, false))
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

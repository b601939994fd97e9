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

        let slot = self.open_retrying(started, wait).await?;
        shared.stats.checked_out();
        Ok(Lease::new(slot, Arc::clone(shared), permit, false))
    }

    /// Opens a connection, retrying transient failures (unreachable, timed
    /// out, server starting up) until `deadline` (the client's
    /// `query_wait_timeout`), so a restarting or flapping upstream costs
    /// clients a short wait instead of an error. A healthy pool opens in
    /// parallel; during an outage the pool's clients take turns, one attempt
    /// per back-off pause (see `backoff.rs`), so attempts do not scale with
    /// the number of waiting clients.
    async fn open_retrying(
        &self,
        started: Instant,
        wait: Option<Duration>,
    ) -> Result<Slot<C::Conn>, CheckoutError<C::Error>> {
        let deadline = wait.map(|limit| started + limit);
        let mut last_error = None;
        loop {
            let attempt = if self.shared.backoff.retry_at().is_none() {
                self.open().await
            } else {
                match self.attempt_in_turn(deadline, last_error.is_some()).await {
                    Turn::Attempted(result) => result,
                    Turn::Recovered => continue,
                    Turn::TooLate => {
                        return Err(last_error.unwrap_or_else(|| self.upstream_down(started)));
                    }
                }
            };
            let error = match attempt {
                Ok(slot) => return Ok(slot),
                Err(error) => error,
            };
            if deadline.is_none() || !self.is_transient(&error) {
                return Err(error);
            }
            last_error = Some(error);
        }
    }

    /// During an outage: waits for the pool's turn and its back-off pause,
    /// then attempts once, unless that would end after `deadline`. A client
    /// that has `tried` nothing itself yet attempts at once in its turn
    /// instead of giving up unheard, so an upstream that came back during
    /// the pause is found by the first client after it.
    async fn attempt_in_turn(&self, deadline: Option<Instant>, tried: bool) -> Turn<C> {
        let backoff = &self.shared.backoff;
        let turn = match deadline {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline.into(), backoff.turn()).await {
                    Ok(turn) => turn,
                    Err(_) => return Turn::TooLate,
                }
            }
            None => backoff.turn().await,
        };
        let Some(retry_at) = backoff.retry_at() else {
            return Turn::Recovered;
        };
        if deadline.is_some_and(|deadline| retry_at >= deadline) {
            if tried {
                return Turn::TooLate;
            }
        } else {
            tokio::time::sleep_until(retry_at.into()).await;
        }
        let attempt = self.open().await;
        drop(turn);
        Turn::Attempted(attempt)
    }

    fn is_transient(&self, error: &CheckoutError<C::Error>) -> bool {
        match error {
            CheckoutError::Connect(cause) => self.shared.connector.is_transient(cause),
            CheckoutError::ConnectTimeout(_) => true,
            _ => false,
        }
    }

    /// The error of a client whose wait ended during an outage before it
    /// could attempt a connect itself.
    fn upstream_down(&self, started: Instant) -> CheckoutError<C::Error> {
        CheckoutError::UpstreamDown {
            waited: started.elapsed(),
            last_error: self
                .shared
                .last_connect_failure()
                .unwrap_or_else(|| "connect attempts are failing".to_owned()),
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
                let transient = shared.connector.is_transient(&error);
                shared.connect_failed(error.to_string(), transient);
                Err(CheckoutError::Connect(error))
            }
            Err(_) => {
                let error = CheckoutError::<C::Error>::ConnectTimeout(limit);
                shared.connect_failed(error.to_string(), true);
                Err(error)
            }
        }
    }
}

/// What came of waiting for the pool's turn to connect during an outage.
enum Turn<C: Connector> {
    Attempted(Result<Slot<C::Conn>, CheckoutError<C::Error>>),
    /// Another client's attempt succeeded meanwhile: open in parallel again.
    Recovered,
    /// The client's wait would end before its attempt could start.
    TooLate,
}

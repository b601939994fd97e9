//! A server connection lent to one client, and the one lazy release policy
//! both protocols follow between transactions.
//!
//! Giving a connection back and checking it out again at every transaction
//! costs more than a short transaction itself when nobody else is waiting,
//! so a client whose connection is clean (nothing in flight, no transaction
//! open, nothing pinned: the protocol decides that) keeps it, idle, until
//! the pool wants it back: a client waits in line, or the pool pauses,
//! shrinks or closes. It also goes back, unasked, when it outlives
//! `server_lifetime` or has been idle `server_idle_timeout`, as in the pool
//! it would be closed. A change of that policy is made here.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::shared::{Shared, Slot};
use super::{CloseReason, Connector, Pool, Traffic};

/// A server connection lent to one client. Give it back with
/// [`Lease::release`] once it is idle and reset; dropping it closes the
/// connection, so a connection in an unknown state is never reused.
pub struct Lease<C: Connector> {
    slot: Option<Slot<C::Conn>>,
    shared: Arc<Shared<C>>,
    /// Held for as long as the client has the connection.
    _permit: OwnedSemaphorePermit,
    reused: bool,
    /// Set while the client keeps the connection idle between uses.
    kept: Option<Kept>,
}

/// A connection the client keeps idle between uses (lazy release).
#[derive(Clone, Copy)]
struct Kept {
    /// Given back, it has been idle since then, not since the release.
    since: Instant,
    /// When it goes back even unasked.
    until: Instant,
}

/// What [`Lease::keep_or_give_back`] decided for a clean, idle connection.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum KeepOrGiveBack {
    /// The client keeps it; [`Lease::wanted_back`] says when it must go.
    Keep,
    /// The pool wants it (or it has outlived `server_lifetime`): the
    /// client gives it back now, with [`Lease::release`].
    GiveBack,
}

impl<C: Connector> Lease<C> {
    pub(super) fn new(
        slot: Slot<C::Conn>,
        shared: Arc<Shared<C>>,
        permit: OwnedSemaphorePermit,
        reused: bool,
    ) -> Self {
        Lease {
            slot: Some(slot),
            shared,
            _permit: permit,
            reused,
            kept: None,
        }
    }

    pub fn conn(&mut self) -> &mut C::Conn {
        &mut self.slot_mut().conn
    }

    /// True when this connection served an earlier client.
    pub fn was_reused(&self) -> bool {
        self.reused
    }

    /// The pool this connection came from.
    fn pool(&self) -> Pool<C> {
        Pool {
            shared: Arc::clone(&self.shared),
        }
    }

    fn slot_mut(&mut self) -> &mut Slot<C::Conn> {
        // The slot is only taken out by methods that consume `self`.
        self.slot
            .as_mut()
            .expect("pooled connection already given back")
    }

    /// True once the connection has outlived `server_lifetime`: given back,
    /// it is closed.
    pub(super) fn is_expired(&self) -> bool {
        self.slot
            .as_ref()
            .is_some_and(|slot| Instant::now() >= slot.expires_at)
    }

    /// For a clean, idle connection: keeps it unless the pool wants it back
    /// or it has outlived `server_lifetime`.
    pub fn keep_or_give_back(&mut self) -> KeepOrGiveBack {
        if self.pool().wants_connections_back() || self.is_expired() {
            return KeepOrGiveBack::GiveBack;
        }
        self.keep_idle();
        KeepOrGiveBack::Keep
    }

    /// The client keeps the connection, idle, until the pool wants it back.
    /// Returns when it should go back even unasked, as an idle one in the
    /// pool would be closed: when its lifetime ends, or once it has been
    /// idle `server_idle_timeout`.
    pub(super) fn keep_idle(&mut self) -> Instant {
        let since = Instant::now();
        let expires_at = self.slot_mut().expires_at;
        let until = match self.shared.limits.load().idle_timeout {
            Some(limit) => expires_at.min(since + limit),
            None => expires_at,
        };
        self.kept = Some(Kept { since, until });
        until
    }

    /// True while the client keeps the connection idle between uses.
    pub fn is_kept(&self) -> bool {
        self.kept.is_some()
    }

    /// The client uses the connection it kept idle again.
    pub fn reuse_kept(&mut self) {
        self.kept = None;
    }

    /// While kept: completes when the connection must go back, because the
    /// pool wants it or its kept deadline has passed. `None` when not kept.
    /// Owns what it waits on, so the caller may read the connection meanwhile.
    pub fn wanted_back(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let until = self.kept?.until;
        let pool = self.pool();
        Some(async move {
            tokio::select! {
                () = pool.connection_wanted_back() => {}
                () = tokio::time::sleep_until(until.into()) => {}
            }
        })
    }

    /// Returns the connection to the pool (or closes it when it has outlived
    /// `server_lifetime`). Only for connections that are idle and reset.
    pub fn release(mut self) {
        if let Some(slot) = self.slot.take() {
            let idle_since = self.kept.map_or_else(Instant::now, |kept| kept.since);
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

impl<C: Connector> Drop for Lease<C> {
    fn drop(&mut self) {
        // Runs after `release` and `discard` too: the one place a loan ends.
        self.shared.stats.given_back();
        if let Some(slot) = self.slot.take() {
            self.shared.close(slot, CloseReason::Abandoned);
        }
    }
}

//! The background task of each pool: closes connections past
//! `server_idle_timeout` or `server_lifetime`, and keeps `min_pool_size`
//! connections open. `Pool::new` lives here because creating a pool starts
//! its janitor, which ends when the pool is dropped; this way the pool's
//! state in `shared.rs` needs nothing from this file.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::shared::{Pool, Shared};
use super::{Connector, PoolLimits};
use crate::ratelimit::{Suppressed, WARNINGS};

/// How often the janitor looks at a pool.
const TICK: Duration = Duration::from_millis(500);

impl<C: Connector> Pool<C> {
    /// Creates the pool and starts its janitor, which enforces
    /// `server_idle_timeout`, `server_lifetime` and `min_pool_size`.
    /// Must be called inside a Tokio runtime.
    pub fn new(connector: C, limits: PoolLimits) -> Self {
        let shared = Shared::new(connector, limits);
        spawn(Arc::downgrade(&shared));
        Pool { shared }
    }
}

fn spawn<C: Connector>(shared: Weak<Shared<C>>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if shared.permits.is_closed() {
                return;
            }
            let pool = Pool { shared };
            let limits = pool.limits();
            pool.reap(Instant::now(), limits.min_size, limits.idle_timeout);
            top_up(&pool).await;
        }
    });
}

/// Opens connections until `min_pool_size` are open (not while paused or
/// winding down, nor during an outage before the pool's back-off allows the
/// next attempt). Only takes permits that are free at once, so it never
/// makes a waiting client wait longer.
async fn top_up<C: Connector>(pool: &Pool<C>) {
    while pool.shared.stats.open_now() < pool.limits().min_size
        && !pool.is_paused()
        && !pool.shared.is_winding_down()
    {
        // During an outage the janitor's attempt takes the pool's turn too.
        let backoff = &pool.shared.backoff;
        let _turn = match backoff.retry_at() {
            None => None,
            Some(at) if at <= Instant::now() => match backoff.try_turn() {
                Some(turn) => Some(turn),
                None => return,
            },
            Some(_) => return,
        };
        let Ok(permit) = Arc::clone(&pool.shared.permits).try_acquire_owned() else {
            return;
        };
        match pool.open().await {
            Ok(slot) => pool.shared.return_idle(slot, Instant::now()),
            Err(error) => {
                let error = error.to_string();
                if let Some(suppressed) = WARNINGS.check("min_pool_size connect failed", &error) {
                    tracing::warn!(%error, "could not open a connection to keep min_pool_size{}", Suppressed(suppressed));
                }
                return;
            }
        }
        drop(permit);
    }
}

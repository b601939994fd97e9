//! Applying new limits to a running pool (configuration reload): sizes and
//! timeouts take effect for the next checkout; a smaller pool shrinks as
//! connections are given back, never by taking one from a client (clients
//! keeping one between transactions are asked for it).

use std::sync::Arc;

use super::{Connector, Pool, PoolLimits};

impl<C: Connector> Pool<C> {
    /// Puts `limits` in force. Growing adds permits now; shrinking takes
    /// permits out of circulation as they come free, in line behind the
    /// clients already waiting.
    pub fn set_limits(&self, limits: PoolLimits) {
        let old = self.shared.limits.swap(Arc::new(limits.clone()));
        if limits.max_size > old.max_size {
            self.shared
                .permits
                .add_permits(limits.max_size - old.max_size);
        } else if limits.max_size < old.max_size {
            let surplus = u32::try_from(old.max_size - limits.max_size).unwrap_or(u32::MAX);
            let permits = Arc::clone(&self.shared.permits);
            let demand = Arc::clone(&self.shared.demand);
            tokio::spawn(async move {
                let _in_line = demand.wait_in_line();
                demand.raise();
                // Fails only when the pool closes, and then nothing is owed.
                if let Ok(taken) = permits.acquire_many_owned(surplus).await {
                    taken.forget();
                }
            });
        }
    }
}

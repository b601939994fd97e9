//! A protocol's pools, keyed by what a client connects to, swapped whole
//! when a reload changes the configuration: a pool whose upstream and mode
//! are unchanged is kept (with its connections, new limits applied), a
//! changed or removed one is closed (its idle connections now, busy ones
//! as their clients give them back) and a new one takes its key.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Connector, Pool, PoolLimits};
use crate::config::PoolMode;

/// What makes a pool the same pool across a reload: where and as whom it
/// logs in (`target`, the protocol's upstream description), and how its
/// clients share its connections.
#[derive(PartialEq)]
pub struct PoolIdentity<T> {
    pub target: T,
    pub mode: PoolMode,
}

/// One pool a configuration calls for: its key, what makes it the same
/// pool as before (upstream, credentials, mode), its limits, and the
/// connector it is built with if it is new.
pub struct Wanted<K, F, C> {
    pub key: K,
    pub identity: F,
    pub limits: PoolLimits,
    pub connector: C,
}

/// The pools in force, each with the identity it was built for.
pub struct PoolSet<K, F, C: Connector> {
    pools: ArcSwap<HashMap<K, (F, Pool<C>)>>,
}

impl<K: Eq + Hash + Clone, F: PartialEq, C: Connector> PoolSet<K, F, C> {
    /// Builds every wanted pool. Must run inside a Tokio runtime.
    pub fn new(wanted: impl IntoIterator<Item = Wanted<K, F, C>>) -> Self {
        let set = PoolSet {
            pools: ArcSwap::from_pointee(HashMap::new()),
        };
        set.reconcile(wanted);
        set
    }

    pub fn get<Q>(&self, key: &Q) -> Option<Pool<C>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.pools.load().get(key).map(|(_, pool)| pool.clone())
    }

    /// Every pool in force now, with its key.
    pub fn all(&self) -> Vec<(K, Pool<C>)> {
        (self.pools.load().iter())
            .map(|(key, (_, pool))| (key.clone(), pool.clone()))
            .collect()
    }

    /// Puts the wanted pools in force: unchanged ones are kept and take
    /// their new limits, the others are built; pools no longer wanted, or
    /// wanted with another identity, are closed.
    pub fn reconcile(&self, wanted: impl IntoIterator<Item = Wanted<K, F, C>>) {
        let old = self.pools.load_full();
        let mut next = HashMap::new();
        for want in wanted {
            let pool = match old.get(&want.key) {
                Some((identity, pool)) if *identity == want.identity => {
                    if *pool.limits() != want.limits {
                        pool.set_limits(want.limits);
                    }
                    pool.clone()
                }
                _ => Pool::new(want.connector, want.limits),
            };
            next.insert(want.key, (want.identity, pool));
        }
        for (key, (_, pool)) in old.iter() {
            let kept = next.get(key).is_some_and(|(_, new)| new.is_same(pool));
            if !kept {
                pool.close();
            }
        }
        self.pools.store(Arc::new(next));
    }

    /// Closes every pool (at shutdown).
    pub fn close_all(&self) {
        for (_, pool) in self.pools.load().values() {
            pool.close();
        }
    }
}

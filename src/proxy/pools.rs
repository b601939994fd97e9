//! Every pool of both protocols, seen alike: what the admin console and the
//! metrics read and what PAUSE, RESUME, KILL and RELOAD act on, without
//! knowing which protocol a pool serves.

use std::sync::Arc;

use super::Proxy;
use crate::metrics::{PROTOCOL_MYSQL, PROTOCOL_POSTGRES};
use crate::pool::PoolControl;

/// One pool. A MySQL (database, user) has two, with and without
/// FOUND_ROWS; readers that list (database, user) add them up.
pub struct PoolEntry {
    /// `postgres` or `mysql`, as the metrics label it.
    pub protocol: &'static str,
    pub database: String,
    pub user: String,
    pub control: Arc<dyn PoolControl>,
}

impl Proxy {
    /// Every pool in force, PostgreSQL's then MySQL's.
    pub fn pools(&self) -> Vec<PoolEntry> {
        let postgres =
            (self.postgres.pools().into_iter()).map(|((database, user), pool)| PoolEntry {
                protocol: PROTOCOL_POSTGRES,
                database,
                user,
                control: Arc::new(pool) as Arc<dyn PoolControl>,
            });
        let mysql = (self.mysql.pools().into_iter()).map(|((database, user, _), pool)| PoolEntry {
            protocol: PROTOCOL_MYSQL,
            database,
            user,
            control: Arc::new(pool) as Arc<dyn PoolControl>,
        });
        postgres.chain(mysql).collect()
    }

    /// The pools of `database`, or of every database when `None`.
    pub fn pools_of(&self, database: Option<&str>) -> Vec<PoolEntry> {
        let mut pools = self.pools();
        pools.retain(|pool| database.is_none_or(|wanted| pool.database == wanted));
        pools
    }
}

//! Every pool of both protocols, seen alike: what the admin console and the
//! metrics read and what PAUSE, RESUME, KILL and RELOAD act on, without
//! knowing which protocol a pool serves.

use super::Proxy;
use crate::metrics::{PROTOCOL_MYSQL, PROTOCOL_POSTGRES};
use crate::pool::PoolControl;

/// One pool. A MySQL (database, user) has two, with and without
/// FOUND_ROWS; readers that list (database, user) add them up.
pub struct PoolEntry<'a> {
    /// `postgres` or `mysql`, as the metrics label it.
    pub protocol: &'static str,
    pub database: &'a str,
    pub user: &'a str,
    pub control: &'a dyn PoolControl,
}

impl Proxy {
    /// Every pool, PostgreSQL's then MySQL's.
    pub fn pools(&self) -> Vec<PoolEntry<'_>> {
        let postgres = self
            .postgres
            .pools()
            .map(|((database, user), pool)| PoolEntry {
                protocol: PROTOCOL_POSTGRES,
                database,
                user,
                control: pool as &dyn PoolControl,
            });
        let mysql = self
            .mysql
            .pools()
            .map(|((database, user, _), pool)| PoolEntry {
                protocol: PROTOCOL_MYSQL,
                database,
                user,
                control: pool as &dyn PoolControl,
            });
        postgres.chain(mysql).collect()
    }

    /// The pools of `database`, or of every database when `None`.
    pub fn pools_of(&self, database: Option<&str>) -> Vec<PoolEntry<'_>> {
        let mut pools = self.pools();
        pools.retain(|pool| database.is_none_or(|wanted| pool.database == wanted));
        pools
    }
}

//! The sizing and timing limits one pool enforces.

use std::time::Duration;

use crate::config::PoolSettings;

/// Sizing and timing limits of one pool, taken from [`PoolSettings`].
#[derive(Debug, Clone, PartialEq)]
pub struct PoolLimits {
    /// Most server connections open at once (`default_pool_size`).
    pub max_size: usize,
    /// Server connections kept open while idle (`min_pool_size`).
    pub min_size: usize,
    /// Age after which a connection is closed instead of reused (`server_lifetime`).
    pub lifetime: Duration,
    /// Idle time after which a connection above `min_size` is closed (`server_idle_timeout`).
    pub idle_timeout: Option<Duration>,
    /// Limit on opening and logging in one connection (`server_connect_timeout`).
    pub connect_timeout: Duration,
}

impl From<&PoolSettings> for PoolLimits {
    fn from(settings: &PoolSettings) -> Self {
        PoolLimits {
            max_size: settings.default_pool_size,
            min_size: settings.min_pool_size,
            lifetime: settings.server_lifetime,
            idle_timeout: settings.server_idle_timeout,
            connect_timeout: settings.server_connect_timeout,
        }
    }
}

//! The commands that change what churnstile does: PAUSE and RESUME of one
//! database's pools or all of them, KILL, RELOAD and SHUTDOWN.

use std::sync::Arc;
use std::time::Duration;

use crate::pool::PoolControl;
use crate::postgres::wire::messages::sqlstate;
use crate::proxy::{Proxy, ReloadError};

/// How often PAUSE looks whether the pools have drained.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// A command that failed: the SQLSTATE and message of the ERROR sent.
#[derive(Debug)]
pub(super) struct Failed {
    pub code: &'static str,
    pub message: String,
}

fn failed(code: &'static str, message: impl Into<String>) -> Failed {
    Failed {
        code,
        message: message.into(),
    }
}

/// The pools of `database`, or of every database when `None`, PostgreSQL
/// and MySQL alike.
fn pools_of(proxy: &Proxy, database: Option<&str>) -> Result<Vec<Arc<dyn PoolControl>>, Failed> {
    let pools: Vec<Arc<dyn PoolControl>> = (proxy.pools_of(database).into_iter())
        .map(|pool| pool.control)
        .collect();
    match database {
        Some(name) if pools.is_empty() => Err(failed(
            sqlstate::INVALID_CATALOG_NAME,
            format!("no such database: {name}"),
        )),
        _ => Ok(pools),
    }
}

/// Pauses the pools and returns once none has a server connection left
/// (clients holding one must give it back first, as with PgBouncer).
pub(super) async fn pause(proxy: &Proxy, database: Option<&str>) -> Result<(), Failed> {
    let pools = pools_of(proxy, database)?;
    for pool in &pools {
        pool.pause();
    }
    loop {
        if pools.iter().any(|pool| !pool.is_paused()) {
            return Err(failed(
                sqlstate::QUERY_CANCELED,
                "RESUME was issued before PAUSE completed",
            ));
        }
        if pools.iter().all(|pool| {
            let stats = pool.stats();
            stats.open == 0 && stats.opening == 0
        }) {
            return Ok(());
        }
        tokio::select! {
            () = proxy.shutdown.cancelled() => return Err(failed(sqlstate::ADMIN_SHUTDOWN, "shutting down")),
            () = tokio::time::sleep(DRAIN_POLL) => {}
        }
    }
}

pub(super) fn resume(proxy: &Proxy, database: Option<&str>) -> Result<(), Failed> {
    for pool in pools_of(proxy, database)? {
        pool.resume();
    }
    Ok(())
}

/// Disconnects the database's clients and closes its server connections;
/// new queries wait until RESUME. Returns how many clients were killed.
pub(super) fn kill(proxy: &Proxy, database: &str) -> Result<usize, Failed> {
    for pool in pools_of(proxy, Some(database))? {
        pool.pause();
    }
    Ok(proxy.clients.kill_database(database))
}

/// Re-reads the configuration file; returns what was not applied.
pub(super) fn reload(proxy: &Proxy) -> Result<Vec<String>, Failed> {
    proxy.reload().map_err(|error| {
        let code = match error {
            ReloadError::NoConfigFile => sqlstate::FEATURE_NOT_SUPPORTED,
            ReloadError::Invalid(_) | ReloadError::Tls(_) => sqlstate::CONFIG_FILE_ERROR,
        };
        failed(code, error.to_string())
    })
}

/// Shuts down exactly as SIGINT does, by sending it (transactions finish,
/// then every client is told), or as SIGTERM does when `wait_for_clients`
/// (once every client, this console too, has disconnected).
pub(super) fn shutdown(wait_for_clients: bool) -> Result<(), Failed> {
    use rustix::process::{Signal, getpid, kill_process};
    let signal = if wait_for_clients {
        Signal::TERM
    } else {
        Signal::INT
    };
    kill_process(getpid(), signal).map_err(|errno| {
        failed(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("cannot signal myself: {errno}"),
        )
    })
}

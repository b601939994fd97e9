//! The commands that change what churnstile does: PAUSE and RESUME of one
//! database's pools or all of them, KILL, RELOAD and SHUTDOWN.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::reload;
use crate::config::load_file;
use crate::pool::PoolControl;
use crate::postgres::service::PgService;
use crate::postgres::wire::messages::sqlstate;

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
fn pools_of<'a>(
    service: &'a PgService,
    database: Option<&str>,
) -> Result<Vec<&'a dyn PoolControl>, Failed> {
    let wanted = |name: &String| database.is_none_or(|wanted| name == wanted);
    let mut pools: Vec<&dyn PoolControl> = service
        .pools()
        .filter(|((name, _), _)| wanted(name))
        .map(|(_, pool)| pool as &dyn PoolControl)
        .collect();
    if let Some(mysql) = service.mysql.get() {
        pools.extend(
            mysql
                .pools()
                .filter(|((name, _, _), _)| wanted(name))
                .map(|(_, pool)| pool as &dyn PoolControl),
        );
    }
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
pub(super) async fn pause(
    service: &PgService,
    database: Option<&str>,
    shutdown: &CancellationToken,
) -> Result<(), Failed> {
    let pools = pools_of(service, database)?;
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
            () = shutdown.cancelled() => return Err(failed(sqlstate::ADMIN_SHUTDOWN, "shutting down")),
            () = tokio::time::sleep(DRAIN_POLL) => {}
        }
    }
}

pub(super) fn resume(service: &PgService, database: Option<&str>) -> Result<(), Failed> {
    for pool in pools_of(service, database)? {
        pool.resume();
    }
    Ok(())
}

/// Disconnects the database's clients and closes its server connections;
/// new queries wait until RESUME. Returns how many clients were killed.
pub(super) fn kill(service: &PgService, database: &str) -> Result<usize, Failed> {
    for pool in pools_of(service, Some(database))? {
        pool.pause();
    }
    Ok(service.clients.kill_database(database))
}

/// Re-reads the configuration file; returns what was not applied.
pub(super) fn reload(service: &PgService) -> Result<Vec<String>, Failed> {
    let Some(path) = &service.config_file else {
        return Err(failed(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "RELOAD needs a configuration file: this churnstile was started without --config",
        ));
    };
    let new = load_file(path).map_err(|errors| {
        failed(
            sqlstate::CONFIG_FILE_ERROR,
            format!("configuration not reloaded:\n{errors}"),
        )
    })?;
    let (merged, notes) = reload::merge(&service.config.load(), &new);
    reload::apply(service, merged);
    tracing::info!(file = %path.display(), not_applied = ?notes, "configuration reloaded");
    Ok(notes)
}

/// Shuts down exactly as SIGTERM does, by sending it.
pub(super) fn shutdown() -> Result<(), Failed> {
    let me = rustix::process::getpid();
    rustix::process::kill_process(me, rustix::process::Signal::TERM).map_err(|errno| {
        failed(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("cannot signal myself: {errno}"),
        )
    })
}

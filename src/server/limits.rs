//! Descriptor and port safety, once at startup: raise RLIMIT_NOFILE's soft
//! limit to the hard limit, warn when the configuration can use more
//! descriptors than that, and warn (with the sysctl fix, as the doctor does)
//! about listen ports a client socket may take from the ephemeral range.

use std::io;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::config::Config;
use crate::doctor::ListenPortFindings;
use crate::host::EphemeralPorts;

/// Descriptors beyond clients and server connections: listeners, the
/// runtime's epoll and wakers, signal pipes, stdio, cancel requests in
/// flight, clients being refused past `max_client_conn`.
const SPARE_FDS: u64 = 64;

/// The open-file limit before and after raising it; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    before: Option<u64>,
    now: Option<u64>,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: a pooler's clients and
/// server connections are all descriptors, and 1024 (a common default soft
/// limit) runs out long before the host does.
pub fn raise_fd_limit() -> io::Result<FdLimit> {
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    let (Some(soft), Some(hard)) = (limit.current, limit.maximum) else {
        // Unlimited soft or hard limit: nothing to raise (or to raise to).
        return Ok(FdLimit {
            before,
            now: before,
        });
    };
    if soft >= hard {
        return Ok(FdLimit {
            before,
            now: before,
        });
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        },
    )?;
    Ok(FdLimit {
        before,
        now: Some(hard),
    })
}

/// Descriptors `config` can hold at once: every client, every server
/// connection of every (database, user) pool, and some spare.
pub fn fds_needed(config: &Config) -> u64 {
    let users = config.users.len() as u64;
    let servers: u64 = config
        .databases
        .values()
        .map(|db| db.pool.default_pool_size as u64 * users)
        .sum();
    config.general.max_client_conn as u64 + servers + SPARE_FDS
}

/// The warning for a configuration that can outgrow `limit` descriptors.
pub fn capacity_warning(config: &Config, limit: u64) -> Option<String> {
    let needed = fds_needed(config);
    if needed <= limit {
        return None;
    }
    let clients = config.general.max_client_conn as u64;
    let pools = config.databases.len() * config.users.len();
    Some(format!(
        "the open-file limit ({limit}) is below what this configuration can use: \
         max_client_conn {clients} + {} server connections ({pools} pools) + {SPARE_FDS} spare \
         = {needed}; past the limit new clients wait in the listen backlog (EMFILE) until \
         descriptors free up. Raise the hard limit (LimitNOFILE={needed} in the systemd unit, \
         or `ulimit -Hn {needed}` before starting churnstile) or lower max_client_conn or \
         default_pool_size",
        needed - clients - SPARE_FDS
    ))
}

/// Raises the fd limit and logs what an operator should fix before load
/// arrives. Nothing here stops churnstile from starting.
pub fn check_at_startup(config: &Config) {
    let limit = match raise_fd_limit() {
        Ok(limit) => {
            if limit.now != limit.before {
                tracing::info!(
                    from = %shown(limit.before),
                    to = %shown(limit.now),
                    "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
                );
            }
            limit.now
        }
        Err(error) => {
            let limit = getrlimit(Resource::Nofile).current;
            tracing::warn!(
                %error,
                limit = %shown(limit),
                "cannot raise the open-file limit; keeping it"
            );
            limit
        }
    };
    if let Some(warning) = limit.and_then(|limit| capacity_warning(config, limit)) {
        tracing::warn!("{warning}");
    }
    match EphemeralPorts::read() {
        Ok(ephemeral) => {
            let listen = &config.listen;
            let addresses: Vec<_> = listen
                .postgres
                .iter()
                .chain(&listen.mysql)
                .copied()
                .collect();
            for finding in ephemeral.listen_port_findings(&addresses) {
                tracing::warn!(
                    "{}: {}; {}. Fix: {}",
                    finding.subject,
                    finding.summary,
                    finding.meaning,
                    finding.action
                );
            }
        }
        Err(error) => {
            tracing::debug!(%error, "cannot check listen ports against the ephemeral range")
        }
    }
}

fn shown(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |limit| limit.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[databases.app]\n[databases.reports]\n\
             [users.alice]\npassword = \"a\"\n[users.bob]\npassword = \"b\"\n{extra}"
        );
        crate::config::parse_str(&text, "test.toml").unwrap()
    }

    #[test]
    fn counts_clients_servers_and_spare() {
        // 100 clients + 2 databases x 2 users x 20 + 64.
        assert_eq!(fds_needed(&config("")), 244);
        let small = config("[general]\nmax_client_conn = 10\n[pool]\ndefault_pool_size = 3\n");
        assert_eq!(fds_needed(&small), 10 + 2 * 2 * 3 + 64);
    }

    #[test]
    fn warns_only_below_what_the_config_needs() {
        let config = config("");
        assert_eq!(capacity_warning(&config, 244), None);
        let warning = capacity_warning(&config, 243).unwrap();
        assert!(
            warning.starts_with(
                "the open-file limit (243) is below what this configuration can use: \
                 max_client_conn 100 + 80 server connections (4 pools) + 64 spare = 244;"
            ),
            "{warning}"
        );
        assert!(warning.contains("LimitNOFILE=244"), "{warning}");
    }

    #[test]
    fn raises_the_soft_limit_to_the_hard_one() {
        let limit = raise_fd_limit().unwrap();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(limit.now, now.current);
        assert_eq!(now.current, now.maximum);
    }
}

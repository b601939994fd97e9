//! Parsing what an administrator types (sans-IO): one or more commands
//! separated by semicolons, case-insensitive, database names bare or in
//! double quotes.

/// What SHOW can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listing {
    Pools,
    Clients,
    Servers,
    Stats,
    Churn,
    Databases,
    Config,
    Version,
    State,
    Lists,
    Fds,
    DnsHosts,
    DnsZones,
    Help,
}

/// One console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Command {
    Show(Listing),
    /// PAUSE [db]: `None` pauses every pool.
    Pause(Option<String>),
    Resume(Option<String>),
    Kill(String),
    Reload,
    /// SHUTDOWN [WAIT_FOR_SERVERS] is SIGINT's shutdown; SHUTDOWN
    /// WAIT_FOR_CLIENTS is SIGTERM's.
    Shutdown {
        wait_for_clients: bool,
    },
    /// PgBouncer's SUSPEND, answered with a not-supported error.
    Suspend,
}

/// What was wrong with a command; the console answers with an ERROR and
/// the session goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum CommandError {
    #[error("unknown command \"{0}\"; SHOW HELP lists the commands")]
    Unknown(String),
    #[error("SHOW {0}: unknown; SHOW HELP lists what can be shown")]
    UnknownListing(String),
    #[error("{0} takes {1}")]
    Arguments(&'static str, &'static str),
}

/// The commands in `sql`, in order; empty statements are skipped.
pub(super) fn parse(sql: &str) -> Vec<Result<Command, CommandError>> {
    sql.split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(parse_one)
        .collect()
}

fn parse_one(statement: &str) -> Result<Command, CommandError> {
    let (verb, rest) = statement
        .split_once(char::is_whitespace)
        .unwrap_or((statement, ""));
    let verb = verb.to_ascii_uppercase();
    let rest = rest.trim();
    // A quoted database name may hold spaces; anything else is words.
    let args: Vec<&str> = match rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(quoted) if !quoted.contains('"') => vec![quoted],
        _ => rest.split_whitespace().collect(),
    };
    let args = args.as_slice();
    match verb.as_str() {
        "SHOW" => match args {
            [what] => listing(what).map(Command::Show),
            _ => Err(CommandError::Arguments("SHOW", "one word, e.g. SHOW POOLS")),
        },
        "PAUSE" => optional_database("PAUSE", args).map(Command::Pause),
        "RESUME" => optional_database("RESUME", args).map(Command::Resume),
        "KILL" => match optional_database("KILL", args)? {
            Some(database) => Ok(Command::Kill(database)),
            None => Err(CommandError::Arguments("KILL", "a database name")),
        },
        "RELOAD" if args.is_empty() => Ok(Command::Reload),
        "SUSPEND" => Ok(Command::Suspend),
        "RELOAD" => Err(CommandError::Arguments("RELOAD", "no arguments")),
        "SHUTDOWN" => {
            shutdown_mode(args).map(|wait_for_clients| Command::Shutdown { wait_for_clients })
        }
        _ => Err(CommandError::Unknown(statement.to_owned())),
    }
}

/// Whether SHUTDOWN waits for clients (PgBouncer's modes, by name).
fn shutdown_mode(args: &[&str]) -> Result<bool, CommandError> {
    let words: Vec<String> = args.iter().map(|word| word.to_ascii_uppercase()).collect();
    match words.as_slice() {
        [] => Ok(false),
        [mode] if mode == "WAIT_FOR_SERVERS" => Ok(false),
        [mode] if mode == "WAIT_FOR_CLIENTS" => Ok(true),
        _ => Err(CommandError::Arguments(
            "SHUTDOWN",
            "no argument, WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS",
        )),
    }
}

fn listing(word: &str) -> Result<Listing, CommandError> {
    Ok(match word.to_ascii_uppercase().as_str() {
        "POOLS" => Listing::Pools,
        "CLIENTS" => Listing::Clients,
        "SERVERS" => Listing::Servers,
        "STATS" => Listing::Stats,
        "CHURN" => Listing::Churn,
        "DATABASES" => Listing::Databases,
        "CONFIG" => Listing::Config,
        "VERSION" => Listing::Version,
        "STATE" => Listing::State,
        "LISTS" => Listing::Lists,
        "FDS" => Listing::Fds,
        "DNS_HOSTS" => Listing::DnsHosts,
        "DNS_ZONES" => Listing::DnsZones,
        "HELP" => Listing::Help,
        _ => return Err(CommandError::UnknownListing(word.to_owned())),
    })
}

fn optional_database(verb: &'static str, args: &[&str]) -> Result<Option<String>, CommandError> {
    match args {
        [] => Ok(None),
        [name] => Ok(Some((*name).to_owned())),
        _ => Err(CommandError::Arguments(verb, "at most one database name")),
    }
}

/// One line per command, for SHOW HELP.
pub(super) const HELP: &[(&str, &str)] = &[
    (
        "SHOW POOLS",
        "clients and server connections of each (database, user) pool",
    ),
    ("SHOW CLIENTS", "every logged-in client"),
    ("SHOW SERVERS", "every open server connection"),
    (
        "SHOW STATS",
        "totals per database since start: transactions, queries, bytes, wait and transaction times",
    ),
    (
        "SHOW CHURN",
        "per pool: client connects against upstream connects, reuse ratio, TIME_WAIT toward the upstream",
    ),
    (
        "SHOW DATABASES",
        "configured databases, their pool settings and state",
    ),
    (
        "SHOW CONFIG",
        "settings in force, their defaults, and whether RELOAD changes them",
    ),
    ("SHOW VERSION", "churnstile's version"),
    (
        "SHOW STATE",
        "whether churnstile is active, paused or suspended",
    ),
    (
        "SHOW LISTS",
        "how many databases, users, pools, clients and server connections there are",
    ),
    (
        "SHOW FDS, DNS_HOSTS, DNS_ZONES",
        "PgBouncer's columns, no rows: no descriptors handed over, no DNS cache",
    ),
    (
        "PAUSE [db]",
        "new queries wait; returns once server connections are closed",
    ),
    ("RESUME [db]", "waiting queries proceed"),
    (
        "KILL db",
        "disconnect the database's clients and server connections; it stays paused until RESUME",
    ),
    (
        "RELOAD",
        "re-read the --config file and apply what can change without a restart",
    ),
    (
        "SHUTDOWN [WAIT_FOR_SERVERS | WAIT_FOR_CLIENTS]",
        "shut down as on SIGINT, or with WAIT_FOR_CLIENTS as on SIGTERM (once every client, this one too, has left)",
    ),
    (
        "SUSPEND",
        "not supported: churnstile does not hand its sockets to a new process; PAUSE drains the pools",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_case_insensitively_with_semicolons() {
        assert_eq!(
            parse("show pools;  SHOW Clients ;show churn"),
            vec![
                Ok(Command::Show(Listing::Pools)),
                Ok(Command::Show(Listing::Clients)),
                Ok(Command::Show(Listing::Churn))
            ]
        );
        assert_eq!(parse("PAUSE"), vec![Ok(Command::Pause(None))]);
        assert_eq!(
            parse("pause \"My Db\""),
            vec![Ok(Command::Pause(Some("My Db".into())))]
        );
        assert_eq!(
            parse("resume app"),
            vec![Ok(Command::Resume(Some("app".into())))]
        );
        assert_eq!(parse("KILL app"), vec![Ok(Command::Kill("app".into()))]);
        assert_eq!(
            parse("reload;shutdown"),
            vec![
                Ok(Command::Reload),
                Ok(Command::Shutdown {
                    wait_for_clients: false
                })
            ]
        );
        assert_eq!(
            parse("shutdown wait_for_clients; SHUTDOWN WAIT_FOR_SERVERS"),
            vec![
                Ok(Command::Shutdown {
                    wait_for_clients: true
                }),
                Ok(Command::Shutdown {
                    wait_for_clients: false
                })
            ]
        );
        assert!(parse(" ; ").is_empty());
        assert_eq!(
            parse("show state;show fds;show dns_hosts;SHOW DNS_ZONES;suspend"),
            vec![
                Ok(Command::Show(Listing::State)),
                Ok(Command::Show(Listing::Fds)),
                Ok(Command::Show(Listing::DnsHosts)),
                Ok(Command::Show(Listing::DnsZones)),
                Ok(Command::Suspend),
            ]
        );
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        let message = |sql| parse(sql)[0].clone().unwrap_err().to_string();
        assert_eq!(
            message("SELECT 1"),
            "unknown command \"SELECT 1\"; SHOW HELP lists the commands"
        );
        assert_eq!(
            message("SHOW MEMORY"),
            "SHOW MEMORY: unknown; SHOW HELP lists what can be shown"
        );
        assert_eq!(message("KILL"), "KILL takes a database name");
        assert_eq!(
            message("PAUSE a b"),
            "PAUSE takes at most one database name"
        );
        assert_eq!(message("RELOAD now"), "RELOAD takes no arguments");
        assert_eq!(
            message("SHUTDOWN NOW"),
            "SHUTDOWN takes no argument, WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS"
        );
    }
}

//! What the load benches share (`mod common;`): the choice between
//! benchmarking and checking parsers, the run sizes from the environment,
//! the machine they ran on, TIME_WAIT sockets read from /proc/net/tcp, the
//! files their clients write, and how a bench with a failed run exits.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::ExitCode;

/// TCP state number of TIME_WAIT in /proc/net/tcp.
const TCP_TIME_WAIT: &str = "06";

/// A load bench's `main`: `cargo bench` passes `--bench` and gets `run`;
/// `cargo test --all-targets` does not, and only gets the quick
/// `check_parsers`.
pub fn main(bench: &str, check_parsers: fn(), run: fn() -> ExitCode) -> ExitCode {
    if std::env::args().any(|arg| arg == "--bench") {
        return run();
    }
    check_parsers();
    println!("{bench} bench: parsers checked; run the bench with `cargo bench --bench {bench}`");
    ExitCode::SUCCESS
}

/// How long and how wide each run is, from the environment:
/// `CHURNSTILE_BENCH_SECONDS` (default 10), `CHURNSTILE_BENCH_CLIENTS`
/// (default 8) and `CHURNSTILE_BENCH_POOL_SIZE` (default the number of
/// clients).
pub struct RunSize {
    pub seconds: u64,
    pub clients: u64,
    pub pool_size: u64,
}

impl RunSize {
    pub fn from_env() -> RunSize {
        let clients = env_number("CHURNSTILE_BENCH_CLIENTS", 8);
        RunSize {
            seconds: env_number("CHURNSTILE_BENCH_SECONDS", 10),
            clients,
            pool_size: env_number("CHURNSTILE_BENCH_POOL_SIZE", clients),
        }
    }

    pub fn run_length(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }
}

/// A positive integer from the environment, `default` when unset.
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(value) => value
            .trim()
            .parse()
            .ok()
            .filter(|&number| number > 0)
            .unwrap_or_else(|| panic!("{name}={value:?} is not a positive integer")),
    }
}

/// `N cores, load average 1m 5m 15m`: other work on the machine skews the
/// numbers, so a bench says how busy it was.
pub fn machine() -> String {
    let loadavg = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    format!("{cores} cores, load average {}", load.join(" "))
}

/// TIME_WAIT sockets of connections to `port`, as (local, remote)
/// addresses, from /proc/net/tcp and /proc/net/tcp6.
///
/// Whichever end closes first keeps the TIME_WAIT. Usually that is the
/// client (remote port `port`), but a server that closes as soon as it reads
/// the client's goodbye sometimes wins the race (local port `port`); both
/// count.
pub fn time_wait_toward(port: u16) -> HashSet<(String, String)> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .flat_map(|table| time_waits_in(&table, port))
        .collect()
}

/// Rows look like `0: 0100007F:A1B2 0100007F:1538 06 ...`: slot, local and
/// remote address (hex IP:hex port), state.
fn time_waits_in(table: &str, port: u16) -> Vec<(String, String)> {
    let port_of = |address: &str| {
        let (_, hex) = address.rsplit_once(':')?;
        u16::from_str_radix(hex, 16).ok()
    };
    table
        .lines()
        .skip(1)
        .filter_map(|row| match row.split_whitespace().collect::<Vec<_>>()[..] {
            [_, local, remote, TCP_TIME_WAIT, ..]
                if port_of(local) == Some(port) || port_of(remote) == Some(port) =>
            {
                Some((local.to_owned(), remote.to_owned()))
            }
            _ => None,
        })
        .collect()
}

pub fn first_word(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or("")
}

pub fn create(path: &Path) -> fs::File {
    fs::File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()))
}

pub fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

/// Success when no run failed; otherwise lists the failures on stderr and
/// fails, so a broken proxy cannot produce a result.
pub fn exit_status(bench: &str, failures: &[String]) -> ExitCode {
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("\n{bench} bench: {} run(s) failed:", failures.len());
    for failure in failures {
        eprintln!("  {failure}");
    }
    ExitCode::FAILURE
}

/// The /proc/net/tcp parser on a sample, for the benches' `cargo test` runs.
pub fn check_parsers() {
    let table = "  sl  local_address rem_address   st tx_queue\n\
        0: 0100007F:A1B2 0100007F:1538 06 00000000:00000000\n\
        1: 0100007F:A1B3 0100007F:1538 01 00000000:00000000\n\
        2: 0100007F:1538 0100007F:A1B4 06 00000000:00000000\n\
        3: 0100007F:A1B5 0100007F:1539 06 00000000:00000000\n";
    let pair = |local: &str, remote: &str| (local.to_owned(), remote.to_owned());
    assert_eq!(
        time_waits_in(table, 0x1538),
        vec![
            pair("0100007F:A1B2", "0100007F:1538"),
            pair("0100007F:1538", "0100007F:A1B4")
        ]
    );
}

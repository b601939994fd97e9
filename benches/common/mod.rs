//! What the load benches share (`mod common;`): the choice between
//! benchmarking and checking parsers, the run sizes from the environment,
//! the machine they ran on, the CPU time a pooler spent, medians over
//! rounds, TIME_WAIT sockets read from /proc/net/tcp, the files their
//! clients write, and how a bench with a failed run exits.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

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
/// `CHURNSTILE_BENCH_SECONDS` (default 5), `CHURNSTILE_BENCH_CLIENTS`
/// (default 8), `CHURNSTILE_BENCH_POOL_SIZE` (default the number of
/// clients) and `CHURNSTILE_BENCH_ROUNDS` (default 3).
pub struct RunSize {
    pub seconds: u64,
    pub clients: u64,
    pub pool_size: u64,
    /// How many times each workload runs against each target. The targets
    /// take turns within a round, each round starting with the next one, so
    /// a burst of load from elsewhere on the machine does not land on one
    /// target only; tables show the median round.
    pub rounds: u64,
}

impl RunSize {
    pub fn from_env() -> RunSize {
        let clients = env_number("CHURNSTILE_BENCH_CLIENTS", 8);
        RunSize {
            seconds: env_number("CHURNSTILE_BENCH_SECONDS", 5),
            clients,
            pool_size: env_number("CHURNSTILE_BENCH_POOL_SIZE", clients),
            rounds: env_number("CHURNSTILE_BENCH_ROUNDS", 3),
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

/// The order in which `targets` take their turn in round `round`: the
/// list rotated left by `round`.
pub fn turn_order<T>(targets: &[T], round: u64) -> impl Iterator<Item = &T> {
    let start = usize::try_from(round).unwrap_or(0) % targets.len().max(1);
    targets[start..].iter().chain(&targets[..start])
}

/// One round of workload `W` against one target.
pub struct RoundResult<W> {
    pub workload: W,
    pub target: &'static str,
    /// Transactions (or churn cycles) per second.
    pub rate: f64,
    /// CPU time the pooler used per transaction or cycle.
    pub cpu_per_unit: Option<Duration>,
    /// Queries per second, where the client reports them.
    pub qps: Option<f64>,
    pub failed: u64,
    /// Connections the server accepted during the round.
    pub upstream_opened: u64,
    /// TIME_WAIT sockets the round left toward the server's port and toward
    /// the port the clients used.
    pub time_wait_server: usize,
    pub time_wait_target: usize,
    /// Why the round failed outright, if it did.
    pub error: Option<String>,
}

/// The rounds of one workload against one target, folded into a row.
pub struct Summary<W> {
    pub workload: W,
    pub target: &'static str,
    /// `None` when every round failed.
    pub stats: Option<RoundStats>,
    /// Median queries per second, where the client reports them.
    pub qps: Option<f64>,
    pub failed: u64,
    pub failed_rounds: usize,
    pub upstream_opened: u64,
    pub time_wait_server: usize,
    pub time_wait_target: usize,
}

impl<W: PartialEq> Summary<W> {
    /// The row's median rate (with `unit`, starred if some rounds failed),
    /// range, ratio to the direct row of the same workload in `all`, and
    /// pooler CPU time per unit; `FAILED` and dashes if every round failed.
    pub fn rate_cells(&self, all: &[Summary<W>], unit: &str) -> [String; 4] {
        let Some(stats) = &self.stats else {
            return ["FAILED", "-", "-", "-"].map(str::to_owned);
        };
        let direct = all
            .iter()
            .find(|other| other.workload == self.workload && other.target == "direct")
            .and_then(|direct| direct.stats.as_ref());
        let mark = if self.failed_rounds > 0 { "*" } else { "" };
        [
            format!("{:.1}{unit}{mark}", stats.median),
            stats.range(),
            stats.ratio_to(direct),
            stats.cpu_micros(),
        ]
    }
}

/// One row per workload and target, in the order they first ran; counts
/// are summed over the rounds, rates and CPU times are the median round.
pub fn summarize<W: Copy + PartialEq>(results: &[RoundResult<W>]) -> Vec<Summary<W>> {
    let mut groups: Vec<Vec<&RoundResult<W>>> = Vec::new();
    for result in results {
        let same = |first: &&RoundResult<W>| {
            first.workload == result.workload && first.target == result.target
        };
        match groups
            .iter_mut()
            .find(|group| group.first().is_some_and(same))
        {
            Some(group) => group.push(result),
            None => groups.push(vec![result]),
        }
    }
    groups
        .into_iter()
        .map(|rounds| {
            let passed: Vec<&RoundResult<W>> = rounds
                .iter()
                .copied()
                .filter(|r| r.error.is_none())
                .collect();
            let rates: Vec<(f64, Option<Duration>)> =
                passed.iter().map(|r| (r.rate, r.cpu_per_unit)).collect();
            let qps: Vec<(f64, Option<Duration>)> =
                passed.iter().filter_map(|r| Some((r.qps?, None))).collect();
            Summary {
                workload: rounds[0].workload,
                target: rounds[0].target,
                stats: RoundStats::of(&rates),
                qps: RoundStats::of(&qps).map(|stats| stats.median),
                failed: rounds.iter().map(|r| r.failed).sum(),
                failed_rounds: rounds.len() - passed.len(),
                upstream_opened: rounds.iter().map(|r| r.upstream_opened).sum(),
                time_wait_server: rounds.iter().map(|r| r.time_wait_server).sum(),
                time_wait_target: rounds.iter().map(|r| r.time_wait_target).sum(),
            }
        })
        .collect()
}

/// The middle value (the mean of the two middle ones for an even count);
/// `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        len if len % 2 == 1 => Some(sorted[middle]),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2.0),
    }
}

/// The rounds of one workload against one target, folded.
pub struct RoundStats {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    /// Median CPU time the pooler used per unit of work, where measured.
    pub cpu: Option<Duration>,
}

impl RoundStats {
    /// From the (rate, pooler CPU per unit of work) of the rounds that did
    /// not fail; `None` when all failed.
    pub fn of(rounds: &[(f64, Option<Duration>)]) -> Option<RoundStats> {
        let rates: Vec<f64> = rounds.iter().map(|(rate, _)| *rate).collect();
        let cpu: Vec<f64> = rounds
            .iter()
            .filter_map(|(_, cpu)| cpu.map(|cpu| cpu.as_secs_f64()))
            .collect();
        Some(RoundStats {
            median: median(&rates)?,
            low: rates.iter().copied().fold(f64::INFINITY, f64::min),
            high: rates.iter().copied().fold(0.0, f64::max),
            cpu: median(&cpu).map(Duration::from_secs_f64),
        })
    }

    /// `low-high`, rounded.
    pub fn range(&self) -> String {
        format!("{:.0}-{:.0}", self.low, self.high)
    }

    /// The median as a multiple of `direct`'s, or `-`.
    pub fn ratio_to(&self, direct: Option<&RoundStats>) -> String {
        direct
            .filter(|direct| direct.median > 0.0)
            .map_or("-".to_owned(), |direct| {
                format!("{:.2}x", self.median / direct.median)
            })
    }

    /// The CPU time per unit of work in microseconds, or `-`.
    pub fn cpu_micros(&self) -> String {
        self.cpu.map_or("-".to_owned(), |cpu| {
            format!("{:.1} µs", cpu.as_secs_f64() * 1e6)
        })
    }
}

/// `spent` divided over `units` of work; `None` without a measurement or
/// without work.
pub fn cpu_per_unit(
    before: Option<Duration>,
    after: Option<Duration>,
    units: f64,
) -> Option<Duration> {
    let spent = after?.checked_sub(before?)?;
    (units >= 1.0).then(|| spent.div_f64(units))
}

/// CPU time process `pid` has used so far, user plus system, over all its
/// threads (fields 14 and 15 of /proc/PID/stat, in clock ticks).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = cpu_ticks_in(&stat)?;
    let per_second = rustix::param::clock_ticks_per_second();
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// utime + stime from a /proc/PID/stat line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from the last ')'.
fn cpu_ticks_in(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name come field 3 (state) onwards: utime is field 14.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
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

/// The /proc parsers and the round helpers on samples, for the benches'
/// `cargo test` runs.
pub fn check_parsers() {
    let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                250 75 0 0 20 0 1 0 100 1000000 200";
    assert_eq!(cpu_ticks_in(stat), Some(325));
    assert!(cpu_time(std::process::id()).is_some());
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&[]), None);
    let round = |workload: u8, rate: f64, error: Option<&str>| RoundResult {
        workload,
        target: "t",
        rate,
        cpu_per_unit: None,
        qps: Some(rate * 2.0),
        failed: u64::from(error.is_some()),
        upstream_opened: 1,
        time_wait_server: 0,
        time_wait_target: 2,
        error: error.map(str::to_owned),
    };
    let rows = summarize(&[
        round(1, 10.0, None),
        round(2, 5.0, None),
        round(1, 30.0, Some("broke")),
        round(1, 20.0, None),
    ]);
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    assert_eq!(
        (first.workload, first.failed, first.failed_rounds),
        (1, 1, 1)
    );
    assert_eq!((first.upstream_opened, first.time_wait_target), (3, 6));
    assert_eq!(first.stats.as_ref().map(|s| s.median), Some(15.0));
    assert_eq!(first.qps, Some(30.0));
    assert_eq!(rows[1].rate_cells(&rows, " tps")[0], "5.0 tps");
    let order: Vec<_> = turn_order(&["a", "b", "c"], 4).copied().collect();
    assert_eq!(order, ["b", "c", "a"]);
    let ms = Duration::from_millis;
    let stats = RoundStats::of(&[(10.0, Some(ms(3))), (30.0, None), (20.0, Some(ms(1)))]).unwrap();
    assert_eq!((stats.median, stats.range()), (20.0, "10-30".to_owned()));
    assert_eq!(stats.cpu, Some(ms(2)));
    let direct = RoundStats::of(&[(40.0, None)]).unwrap();
    assert_eq!(stats.ratio_to(Some(&direct)), "0.50x");
    assert!(RoundStats::of(&[]).is_none());
    assert_eq!(cpu_per_unit(Some(ms(10)), Some(ms(30)), 4.0), Some(ms(5)));
    assert_eq!(cpu_per_unit(None, Some(ms(30)), 4.0), None);

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

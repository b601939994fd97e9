//! Load benchmark: what churnstile does for an app that opens a connection
//! per request, compared with connecting directly and with PgBouncer.
//!
//! Starts a throwaway PostgreSQL server (`max_connections = 200`), loads it
//! with `pgbench -i -s 10` (database `app`), starts churnstile in front of it
//! (md5 auth) and, when installed, PgBouncer with the same settings — first
//! both in session mode, then both in transaction mode. Then runs pgbench
//! workloads against each target, logging in over TCP on 127.0.0.1 as
//! `md5_user` with md5 authentication:
//!
//! - session mode, `pgbench -C -S`: a new connection for every (select-only)
//!   transaction;
//! - session mode, `pgbench -S`: one persistent connection per client;
//! - transaction mode, `pgbench -S -M extended` and `-M prepared`: the
//!   steady-state cost of transaction pooling (PgBouncer before 1.21 cannot
//!   run `-M prepared` in transaction mode; that failure is reported, not
//!   treated as a bench error);
//! - transaction mode, `pgbench -S -M extended` with eight times as many
//!   clients as the pool has connections: what a pooler is for, and where
//!   a direct server spends its time switching between backends.
//!
//! Each workload runs `CHURNSTILE_BENCH_ROUNDS` times against each target,
//! the targets taking turns. For each workload and target it prints the
//! median tps over the rounds (pgbench's "including reconnection times" for
//! `-C`, "without initial connection time" otherwise) and the range, the
//! ratio of the medians to direct, the CPU time the pooler process used per
//! transaction, how many connections PostgreSQL authorized for `md5_user`
//! during all the rounds (exact, from the server log), failed transactions,
//! and the TIME_WAIT sockets the rounds left behind toward PostgreSQL's port
//! and toward the port pgbench connected to.
//!
//! Run it with
//!
//! ```text
//! cargo bench --bench load
//! ```
//!
//! It needs the PostgreSQL server binaries and `pgbench` (tests/run.sh
//! installs them). PgBouncer is optional (`apt-get install pgbouncer`); the
//! bench looks for it at /usr/sbin/pgbouncer and skips it when absent.
//! Settings, from the environment:
//!
//! - `CHURNSTILE_BENCH_SECONDS`: length of each run (`-T`), default 5;
//! - `CHURNSTILE_BENCH_ROUNDS`: runs per workload and target, default 3;
//! - `CHURNSTILE_BENCH_CLIENTS`: pgbench clients (`-c`), default 8;
//! - `CHURNSTILE_BENCH_THREADS`: pgbench threads (`-j`), default 2;
//! - `CHURNSTILE_BENCH_POOL_SIZE`: `default_pool_size` of churnstile and
//!   PgBouncer, default the number of clients.
//!
//! The numbers are not checked against any threshold, but the bench exits
//! non-zero if any run fails outright (pgbench exits non-zero or reports
//! failed transactions), so a broken proxy cannot produce a result.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it only checks
//! its parsers of pgbench's output and /proc/net/tcp, in a moment.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::Duration;

use rustix::process::Signal;
use tempfile::TempDir;

use common::{
    RoundResult, RunSize, Summary, cpu_per_unit, cpu_time, create, env_number, first_word,
    read_lossy, summarize, time_wait_toward, turn_order,
};
use support::child::{self, Startup};
use support::os_account::{self, Account};
use support::temp_dirs::temp_dir;
use support::{APP_DB, MD5_USER, PG_SUPERUSER, PgServer, Proxy, free_port, pg_proxy_config};

const HOST: &str = "127.0.0.1";
/// The many-clients workload runs this many clients per pooled connection.
const MANY_CLIENTS_PER_CONNECTION: u64 = 8;
const SCALE: u32 = 10;
const PGBOUNCER_PATHS: [&str; 3] = [
    "/usr/sbin/pgbouncer",
    "/usr/local/sbin/pgbouncer",
    "/usr/bin/pgbouncer",
];
const PGBOUNCER_READY_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long past `-T` a pgbench run may take before it counts as hung.
const RUN_GRACE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    common::main("load", check_parsers, run)
}

/// The benchmark itself, once `cargo bench` asked for it.
fn run() -> ExitCode {
    let settings = Settings::from_env();
    print_machine(&settings);
    let results = run_all(&settings);
    let summaries = summarize(&results);
    print_table(&summaries, &settings);
    report_failures(&results, &settings)
}

/// What the runs look like, from `CHURNSTILE_BENCH_*` variables.
struct Settings {
    size: RunSize,
    threads: u64,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            size: RunSize::from_env(),
            threads: env_number("CHURNSTILE_BENCH_THREADS", 2),
        }
    }

    fn many_clients(&self) -> u64 {
        self.size.pool_size * MANY_CLIENTS_PER_CONNECTION
    }

    /// Room for the most clients any workload runs, plus the bench's own
    /// connections.
    fn max_connections(&self) -> u64 {
        self.size.clients.max(self.many_clients()) + 20
    }
}

fn print_machine(settings: &Settings) {
    println!("machine: {}", common::machine());
    println!(
        "runs: pgbench -S [-C] -c {} (many clients: -c {}) -j {} -T {}, {} rounds, as {} \
         with md5 over TCP; scale {SCALE}; pool size {} for churnstile and PgBouncer",
        settings.size.clients,
        settings.many_clients(),
        settings.threads,
        settings.size.seconds,
        settings.size.rounds,
        MD5_USER.name,
        settings.size.pool_size
    );
    println!();
}

/// Starts the servers, runs every workload against every target, and
/// stops the servers again.
fn run_all(settings: &Settings) -> Vec<RunResult> {
    let max_connections = settings.max_connections();
    let pg = PgServer::builder()
        .max_connections(u32::try_from(max_connections).unwrap_or(u32::MAX))
        .start();
    init_pgbench(&pg);
    let mut results = Vec::new();
    for mode in ["session", "transaction"] {
        let churnstile = Proxy::start(&pg_proxy_config(
            &pg,
            &format!(
                "[general]\nmax_client_conn = {max_connections}\n\
                 [pool]\npool_mode = \"{mode}\"\ndefault_pool_size = {}\n",
                settings.size.pool_size
            ),
        ));
        let pgbouncer = PgBouncer::start_if_installed(&pg, settings, mode);
        let mut targets = vec![
            Target {
                name: "direct",
                port: pg.port(),
                pid: None,
            },
            Target {
                name: "churnstile",
                port: churnstile.port(),
                pid: Some(churnstile.pid()),
            },
        ];
        if let Some(pgbouncer) = &pgbouncer {
            targets.push(Target {
                name: "pgbouncer",
                port: pgbouncer.port,
                pid: Some(pgbouncer.child.id()),
            });
        }
        for workload in Workload::ALL.into_iter().filter(|w| w.pool_mode() == mode) {
            for round in 0..settings.size.rounds {
                for target in turn_order(&targets, round) {
                    results.push(run_one(&pg, workload, target, settings));
                }
            }
        }
    }
    results
}

/// `pgbench -i -s 10` on `app`, as the superuser.
fn init_pgbench(pg: &PgServer) {
    println!("initializing: pgbench -i -s {SCALE} ...");
    let output = Command::new("pgbench")
        .args([
            "-i",
            "-q",
            "-s",
            &SCALE.to_string(),
            "-h",
            HOST,
            "-U",
            PG_SUPERUSER,
        ])
        .args(["-p", &pg.port().to_string(), APP_DB])
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap_or_else(|e| panic!("running pgbench -i (is pgbench installed?): {e}"));
    if !output.status.success() {
        panic!(
            "pgbench -i failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// `-C`: a new connection for every transaction (session pooling).
    Reconnect,
    /// One connection per client for the whole run (session pooling).
    Persistent,
    /// Persistent clients, extended protocol, transaction pooling.
    ExtendedTxn,
    /// Persistent clients, named prepared statements, transaction pooling.
    PreparedTxn,
    /// Like `ExtendedTxn` with eight clients per pooled connection.
    ManyClientsTxn,
}

impl Workload {
    const ALL: [Workload; 5] = [
        Workload::Reconnect,
        Workload::Persistent,
        Workload::ExtendedTxn,
        Workload::PreparedTxn,
        Workload::ManyClientsTxn,
    ];

    fn label(self, settings: &Settings) -> String {
        match self {
            Workload::Reconnect => "-C -S (conn per txn)".to_owned(),
            Workload::Persistent => "-S (persistent)".to_owned(),
            Workload::ExtendedTxn => "-S -M extended (txn)".to_owned(),
            Workload::PreparedTxn => "-S -M prepared (txn)".to_owned(),
            Workload::ManyClientsTxn => {
                format!("-S -M extended -c {} (txn)", settings.many_clients())
            }
        }
    }

    /// The pool mode the proxies run in for this workload.
    fn pool_mode(self) -> &'static str {
        match self {
            Workload::Reconnect | Workload::Persistent => "session",
            Workload::ExtendedTxn | Workload::PreparedTxn | Workload::ManyClientsTxn => {
                "transaction"
            }
        }
    }

    fn clients(self, settings: &Settings) -> u64 {
        match self {
            Workload::ManyClientsTxn => settings.many_clients(),
            _ => settings.size.clients,
        }
    }

    fn pgbench_args(self) -> &'static [&'static str] {
        match self {
            Workload::Reconnect => &["-n", "-S", "-C"],
            Workload::Persistent => &["-n", "-S"],
            Workload::ExtendedTxn | Workload::ManyClientsTxn => &["-n", "-S", "-M", "extended"],
            Workload::PreparedTxn => &["-n", "-S", "-M", "prepared"],
        }
    }

    /// PgBouncer before 1.21 cannot run named prepared statements in
    /// transaction mode; its failure there is a finding, not a bench error.
    fn pgbouncer_may_fail(self) -> bool {
        self == Workload::PreparedTxn
    }
}

/// Where pgbench connects: PostgreSQL itself or a pooler in front of it.
struct Target {
    name: &'static str,
    port: u16,
    /// The pooler's process, whose CPU time is measured.
    pid: Option<u32>,
}

type RunResult = RoundResult<Workload>;

fn run_one(pg: &PgServer, workload: Workload, target: &Target, settings: &Settings) -> RunResult {
    println!(
        "running: {} against {} ...",
        workload.label(settings),
        target.name
    );
    let pg_waits_before = time_wait_toward(pg.port());
    let target_waits_before = time_wait_toward(target.port);
    let opened_before = pg.connections_authorized(APP_DB, MD5_USER.name);
    let cpu_before = target.pid.and_then(cpu_time);
    let run = run_pgbench(workload, target.port, settings);
    let cpu_after = target.pid.and_then(cpu_time);
    let opened_after = pg.connections_authorized(APP_DB, MD5_USER.name);
    let report = parse_report(&run.stdout);
    let transactions = report.transactions.unwrap_or(0) as f64;
    let cpu_per_transaction = cpu_per_unit(cpu_before, cpu_after, transactions);
    let error = run_error(&run, &report);
    if let Some(error) = &error {
        eprintln!(
            "{} against {} failed: {error}",
            workload.label(settings),
            target.name
        );
        eprintln!(
            "pgbench stdout:\n{}\npgbench stderr:\n{}",
            run.stdout, run.stderr
        );
    }
    RunResult {
        workload,
        target: target.name,
        rate: report.tps.unwrap_or(0.0),
        cpu_per_unit: cpu_per_transaction,
        qps: None,
        failed: report.failed,
        upstream_opened: opened_after.saturating_sub(opened_before) as u64,
        time_wait_server: time_wait_toward(pg.port())
            .difference(&pg_waits_before)
            .count(),
        time_wait_target: time_wait_toward(target.port)
            .difference(&target_waits_before)
            .count(),
        error,
    }
}

/// How one pgbench run ended.
struct PgbenchRun {
    /// `None` if it had to be killed.
    exit_code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs pgbench against `port` as md5_user, killing it if it runs far
/// longer than `-T` asks for.
fn run_pgbench(workload: Workload, port: u16, settings: &Settings) -> PgbenchRun {
    let dir = temp_dir("pgbench");
    let stdout_path = dir.path().join("stdout.log");
    let stderr_path = dir.path().join("stderr.log");
    let mut command = Command::new("pgbench");
    command
        .args(workload.pgbench_args())
        .args(["-c", &workload.clients(settings).to_string()])
        .args(["-j", &settings.threads.to_string()])
        .args(["-T", &settings.size.seconds.to_string()])
        .args([
            "-h",
            HOST,
            "-p",
            &port.to_string(),
            "-U",
            MD5_USER.name,
            APP_DB,
        ])
        .env("PGPASSWORD", MD5_USER.password)
        // The same handshake for every target: no SSL or GSS negotiation.
        .env("PGSSLMODE", "disable")
        .env("PGGSSENCMODE", "disable")
        .stdout(create(&stdout_path))
        .stderr(create(&stderr_path));
    let mut pgbench =
        child::spawn_supervised(command).unwrap_or_else(|e| panic!("running pgbench: {e}"));
    let limit = settings.size.run_length() + RUN_GRACE;
    let exit_code = match child::wait_exit(&mut pgbench, limit) {
        Some(status) => Some(child::exit_code(status)),
        None => {
            child::stop(&mut pgbench, Signal::KILL, STOP_GRACE);
            None
        }
    };
    PgbenchRun {
        exit_code,
        stdout: read_lossy(&stdout_path),
        stderr: read_lossy(&stderr_path),
    }
}

/// What pgbench's summary says.
struct Report {
    tps: Option<f64>,
    transactions: Option<u64>,
    failed: u64,
}

/// Reads `tps = N (...)`, `number of transactions actually processed: N`
/// and `number of failed transactions: N (x%)` (pgbench 15+; older
/// versions do not retry and print no such line).
fn parse_report(stdout: &str) -> Report {
    let mut report = Report {
        tps: None,
        transactions: None,
        failed: 0,
    };
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("tps = ") {
            report.tps = first_word(rest).parse().ok();
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed: ")
        {
            report.transactions = first_word(rest)
                .split('/')
                .next()
                .and_then(|n| n.parse().ok());
        } else if let Some(rest) = line.strip_prefix("number of failed transactions: ") {
            report.failed = first_word(rest).parse().unwrap_or(u64::MAX);
        }
    }
    report
}

fn run_error(run: &PgbenchRun, report: &Report) -> Option<String> {
    match run.exit_code {
        None => Some(format!(
            "pgbench hung and was killed after {RUN_GRACE:?} past -T"
        )),
        Some(code) if code != 0 => Some(format!("pgbench exited with {code}")),
        Some(_) if report.failed > 0 => Some(format!("{} failed transactions", report.failed)),
        Some(_) if report.tps.is_none() => Some("pgbench printed no tps".to_owned()),
        Some(_) => None,
    }
}

fn print_table(summaries: &[Summary<Workload>], settings: &Settings) {
    println!();
    let header = format!(
        "{:<26} | {:<10} | {:>10} | {:>13} | {:>9} | {:>9} | {:>8} | {:>6} | {:>7} | {:>9}",
        "workload",
        "target",
        "median tps",
        "range",
        "vs direct",
        "CPU/txn",
        "upstream",
        "failed",
        "TW→pg",
        "TW→target"
    );
    println!("{header}");
    println!("{}", "-".repeat(header.chars().count()));
    for summary in summaries {
        let [tps, range, ratio, cpu] = summary.rate_cells(summaries, "");
        let workload = summary.workload.label(settings);
        println!(
            "{:<26} | {:<10} | {:>10} | {:>13} | {:>9} | {:>9} | {:>8} | {:>6} | {:>7} | {:>9}",
            workload,
            summary.target,
            tps,
            range,
            ratio,
            cpu,
            summary.upstream_opened,
            summary.failed,
            summary.time_wait_server,
            summary.time_wait_target
        );
    }
    println!();
    println!(
        "median tps / range: over {} rounds of {} s, the targets taking turns; * some rounds failed.",
        settings.size.rounds, settings.size.seconds
    );
    println!(
        "CPU/txn: CPU time (user + system) the pooler process used per transaction, median round."
    );
    println!(
        "upstream: sessions PostgreSQL authorized for {} during all rounds (server log).",
        MD5_USER.name
    );
    println!(
        "TW→pg / TW→target: TIME_WAIT sockets new since each round started, summed, on \
         connections to PostgreSQL's port / to the port pgbench used (either end)."
    );
}

fn report_failures(results: &[RunResult], settings: &Settings) -> ExitCode {
    let failures: Vec<String> = results
        .iter()
        .filter(|result| !(result.target == "pgbouncer" && result.workload.pgbouncer_may_fail()))
        .filter_map(|result| {
            let error = result.error.as_ref()?;
            Some(format!(
                "{} against {}: {error}",
                result.workload.label(settings),
                result.target
            ))
        })
        .collect();
    common::exit_status("load", &failures)
}

/// A PgBouncer in front of the server, with md5 auth and
/// `md5_user` in its userlist. Dropping it stops it.
struct PgBouncer {
    _dir: TempDir,
    port: u16,
    child: Child,
}

impl PgBouncer {
    /// `None`, with a note, when PgBouncer is not installed.
    fn start_if_installed(
        pg: &PgServer,
        settings: &Settings,
        pool_mode: &str,
    ) -> Option<PgBouncer> {
        let Some(binary) = PGBOUNCER_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
        else {
            println!("PgBouncer: not installed (apt-get install pgbouncer); skipped");
            return None;
        };
        let dir = temp_dir("pgbouncer");
        let port = free_port();
        let run_as = service_account();
        write_pgbouncer_files(dir.path(), pg, port, settings, pool_mode);
        if let Some(account) = run_as {
            chown(dir.path(), account);
        }
        let log = dir.path().join("pgbouncer.log");
        let mut command = Command::new(&binary);
        command.arg(dir.path().join("pgbouncer.ini"));
        if let Some(account) = run_as {
            command.uid(account.uid).gid(account.gid);
        }
        child::output_to(&mut command, &log);
        let mut child = child::spawn_supervised(command)
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        match child::wait_ready(&mut child, PGBOUNCER_READY_TIMEOUT, || {
            TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
        }) {
            Startup::Ready => Some(PgBouncer {
                _dir: dir,
                port,
                child,
            }),
            Startup::Exited(_) | Startup::TimedOut => {
                child::stop(&mut child, Signal::KILL, STOP_GRACE);
                panic!("PgBouncer did not start; log:\n{}", read_lossy(&log));
            }
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // SIGTERM: immediate shutdown (SIGINT would wait for clients).
        // Fields drop after this, so the directory goes once it has exited.
        child::stop(&mut self.child, Signal::TERM, STOP_GRACE);
    }
}

/// PgBouncer refuses to run as root; then it runs as `postgres`.
fn service_account() -> Option<Account> {
    if !os_account::running_as_root() {
        return None;
    }
    Some(
        os_account::lookup_account("postgres")
            .unwrap_or_else(|| panic!("running as root but there is no `postgres` account")),
    )
}

fn chown(path: &Path, account: Account) {
    rustix::fs::chown(
        path,
        Some(rustix::fs::Uid::from_raw(account.uid)),
        Some(rustix::fs::Gid::from_raw(account.gid)),
    )
    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// pgbouncer.ini and userlist.txt (md5 secret) in `dir`, which is also the
/// Unix socket directory. Per-connection logging is off, as in churnstile.
fn write_pgbouncer_files(
    dir: &Path,
    pg: &PgServer,
    port: u16,
    settings: &Settings,
    pool_mode: &str,
) {
    let secret = postgres_protocol::password::md5(MD5_USER.password.as_bytes(), MD5_USER.name);
    let userlist = dir.join("userlist.txt");
    fs::write(&userlist, format!("\"{}\" \"{secret}\"\n", MD5_USER.name))
        .unwrap_or_else(|e| panic!("writing {}: {e}", userlist.display()));
    let ini = format!(
        "[databases]\n\
         {APP_DB} = host={host} port={pg_port} dbname={APP_DB}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = {HOST}\n\
         listen_port = {port}\n\
         unix_socket_dir = {dir}\n\
         auth_type = md5\n\
         auth_file = {userlist}\n\
         pool_mode = {pool_mode}\n\
         default_pool_size = {pool_size}\n\
         max_client_conn = {max_client_conn}\n\
         server_reset_query = DISCARD ALL\n\
         log_connections = 0\n\
         log_disconnections = 0\n",
        host = pg.host(),
        pg_port = pg.port(),
        dir = dir.display(),
        userlist = userlist.display(),
        pool_size = settings.size.pool_size,
        max_client_conn = settings.max_connections(),
    );
    let path = dir.join("pgbouncer.ini");
    fs::write(&path, ini).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// What `cargo test` runs instead of the benchmark: the parsers on samples.
fn check_parsers() {
    let report = parse_report(
        "number of transactions actually processed: 12345\n\
         number of failed transactions: 3 (0.100%)\n\
         latency average = 0.5 ms\n\
         tps = 1234.567890 (including reconnection times)\n",
    );
    assert_eq!(report.tps, Some(1234.56789));
    assert_eq!(report.transactions, Some(12345));
    assert_eq!(report.failed, 3);
    common::check_parsers();
}

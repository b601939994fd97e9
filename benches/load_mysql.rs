//! MySQL load benchmark: what churnstile does for MySQL/MariaDB clients, and
//! for an app that connects once per request, compared with connecting to
//! MariaDB directly.
//!
//! Starts a throwaway MariaDB server (database `app`, account `native_user`
//! with mysql_native_password) and two churnstiles in front of it, one in
//! session mode and one in transaction mode, each with `default_pool_size`
//! server connections and clients logging in as `bench`. Every workload runs
//! with the same settings against MariaDB directly and against both
//! churnstiles, over TCP on 127.0.0.1; the churn also runs over Unix
//! sockets, directly and through the transaction-mode churnstile, which is
//! what a PHP app on the same host gets when it connects to "localhost":
//!
//! - connect-per-query churn, the PHP-per-request incident: concurrent
//!   workers each looping connect → `SELECT 1` → close. The workers are PHP
//!   processes using mysqli when `php` has the mysqli extension (`php -m`),
//!   otherwise tasks of one Rust process using mysql_async;
//! - sysbench `oltp_read_only` (`--tables=4 --table-size=10000`, prepared
//!   once directly on MariaDB), persistent connections, once with
//!   `--db-ps-mode=auto` (server-side prepared statements, which churnstile
//!   maps per server connection) and once with `--db-ps-mode=disable`
//!   (plain text queries).
//!
//! Each workload runs `CHURNSTILE_BENCH_ROUNDS` times against each target,
//! the targets taking turns. For each workload and target it prints the
//! median rate over the rounds and the range (completed connect + query +
//! close cycles per second for the churn; sysbench's transactions per
//! second, and its queries per second), the ratio of the medians to direct,
//! the CPU time churnstile used per cycle or transaction, how many
//! connections MariaDB accepted during all the rounds (the `Connections`
//! status counter, read over its Unix socket so the reading opens no TCP
//! connection), failed cycles or sysbench's ignored errors, and the
//! TIME_WAIT sockets the rounds left behind toward MariaDB's port and toward
//! the port the clients connected to.
//!
//! Run it with
//!
//! ```text
//! cargo bench --bench load_mysql
//! ```
//!
//! It needs the MariaDB server and client (tests/run.sh installs them).
//! PHP with mysqli is optional (`apt-get install php-cli php-mysql`), and so
//! is sysbench: when it is missing the bench installs it with
//! `apt-get install sysbench` if running as root, and otherwise skips the
//! sysbench workloads, saying so. Settings, from the environment:
//!
//! - `CHURNSTILE_BENCH_SECONDS`: length of each run, default 5;
//! - `CHURNSTILE_BENCH_ROUNDS`: runs per workload and target, default 3;
//! - `CHURNSTILE_BENCH_CLIENTS`: concurrent churn workers and sysbench
//!   `--threads`, default 8;
//! - `CHURNSTILE_BENCH_POOL_SIZE`: churnstile's `default_pool_size`, default
//!   the number of clients;
//! - `CHURNSTILE_BENCH_CHURN_CLIENT`: `php` or `rust` to choose the churn
//!   client instead of letting the bench pick.
//!
//! The numbers are not checked against any threshold, but the bench exits
//! non-zero if any run fails outright (a client exits non-zero, hangs,
//! completes nothing or reports a failed cycle or error), so a broken proxy
//! cannot produce a result.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it only checks
//! its parsers of the churn workers' and sysbench's output and of
//! /proc/net/tcp, in a moment.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rustix::process::Signal;

use common::{
    RoundResult, RunSize, Summary, cpu_per_unit, cpu_time, create, first_word, read_lossy,
    summarize, time_wait_toward, turn_order,
};
use support::child;
use support::proxy::MYSQL_SOCKET;
use support::temp_dirs::temp_dir;
use support::{APP_DB, MariaDbServer, NATIVE_USER, Proxy, free_port};

const HOST: &str = "127.0.0.1";
/// The account clients log in to churnstile with.
const PROXY_USER: Login = Login {
    user: "bench",
    password: "bench_pass",
};
const DIRECT_USER: Login = Login {
    user: NATIVE_USER.name,
    password: NATIVE_USER.password,
};
const SYSBENCH_TABLES: u32 = 4;
const SYSBENCH_TABLE_SIZE: u32 = 10_000;
/// How long one churn cycle may wait on a connect or a read before it
/// counts as failed, so a proxy that stops answering ends the run.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long past its length a run may take before it counts as hung.
const RUN_GRACE: Duration = Duration::from_secs(30);
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Lets the last closes of a run reach TIME_WAIT before they are counted.
const CLOSE_SETTLE: Duration = Duration::from_millis(250);

/// One churn worker: loops connect → `SELECT 1` → close for `seconds`, then
/// prints `cycles N failed N seconds F` and, on stderr, the first error it
/// met. Arguments: host port user password database seconds timeout socket
/// (TCP when empty; mysqli takes the socket when the host is "localhost").
const PHP_CHURN_WORKER: &str = r#"<?php
mysqli_report(MYSQLI_REPORT_OFF);
[, $host, $port, $user, $password, $database, $seconds, $timeout, $socket] = $argv;
$cycles = 0;
$failed = 0;
$first_error = null;
$started = microtime(true);
while (microtime(true) - $started < (float) $seconds) {
    $error = null;
    $link = mysqli_init();
    $link->options(MYSQLI_OPT_CONNECT_TIMEOUT, (int) $timeout);
    $link->options(MYSQLI_OPT_READ_TIMEOUT, (int) $timeout);
    if (!@$link->real_connect($host, $user, $password, $database, (int) $port, $socket === '' ? null : $socket)) {
        $error = 'connect: ' . mysqli_connect_error();
    } else {
        $result = $link->query('SELECT 1');
        $row = $result === false ? null : $result->fetch_row();
        if ($row === null || $row[0] != '1') {
            $error = 'SELECT 1: ' . ($result === false ? $link->error : 'wrong result');
        }
        if (!$link->close() && $error === null) {
            $error = 'close failed';
        }
    }
    if ($error === null) {
        $cycles++;
    } else {
        $failed++;
        $first_error ??= $error;
    }
}
printf("cycles %d failed %d seconds %.6f\n", $cycles, $failed, microtime(true) - $started);
if ($first_error !== null) {
    fwrite(STDERR, "first error: $first_error\n");
}
"#;

fn main() -> ExitCode {
    common::main("load_mysql", check_parsers, run)
}

/// The benchmark itself, once `cargo bench` asked for it.
fn run() -> ExitCode {
    let settings = Settings::from_env();
    print_machine(&settings);
    let results = run_all(&settings);
    print_table(&summarize(&results), &settings);
    report_failures(&results)
}

/// What the runs look like: the shared sizes and the clients to use.
struct Settings {
    size: RunSize,
    churn_client: ChurnClient,
    /// Whether sysbench is there (installed now if need be).
    sysbench: bool,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            size: RunSize::from_env(),
            churn_client: ChurnClient::from_env(),
            sysbench: ensure_sysbench(),
        }
    }
}

/// What the connect-per-query workers are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ChurnClient {
    /// One `php` process per worker, using mysqli (mysqlnd).
    Php,
    /// One tokio task per worker, using mysql_async.
    Rust,
}

impl ChurnClient {
    fn from_env() -> ChurnClient {
        const VARIABLE: &str = "CHURNSTILE_BENCH_CHURN_CLIENT";
        match std::env::var(VARIABLE).as_deref() {
            Ok("php") => ChurnClient::Php,
            Ok("rust") => ChurnClient::Rust,
            Ok(other) => panic!("{VARIABLE}={other:?}: expected php or rust"),
            Err(_) if php_has_mysqli() => ChurnClient::Php,
            Err(_) => {
                println!("churn client: php with mysqli not found; using mysql_async");
                ChurnClient::Rust
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            ChurnClient::Php => "php mysqli",
            ChurnClient::Rust => "mysql_async",
        }
    }
}

fn php_has_mysqli() -> bool {
    Command::new("php")
        .arg("-m")
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|output| {
            output.status.success()
                && String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .any(|module| module.trim() == "mysqli")
        })
}

/// Whether `sysbench` runs, installing it with apt-get first when it is
/// missing and this is root; says why when it is not there.
fn ensure_sysbench() -> bool {
    let runs = || {
        Command::new("sysbench")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if runs() {
        return true;
    }
    if !support::os_account::running_as_root() {
        println!("sysbench: not installed (apt-get install sysbench); its workloads are skipped");
        return false;
    }
    println!("sysbench: not installed; installing it with apt-get ...");
    let apt_get = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if apt_get(&["update", "-qq"]) && apt_get(&["install", "-y", "-qq", "sysbench"]) && runs() {
        return true;
    }
    println!("sysbench: apt-get could not install it; its workloads are skipped");
    false
}

fn print_machine(settings: &Settings) {
    println!("machine: {}", common::machine());
    println!(
        "runs: {} rounds of {} s each, {} clients over TCP; churn workers: {}; sysbench \
         oltp_read_only --tables={SYSBENCH_TABLES} --table-size={SYSBENCH_TABLE_SIZE}; \
         churnstile pool size {}",
        settings.size.rounds,
        settings.size.seconds,
        settings.size.clients,
        settings.churn_client.name(),
        settings.size.pool_size
    );
    println!();
}

/// A user name and password to log in with.
#[derive(Clone, Copy)]
struct Login {
    user: &'static str,
    password: &'static str,
}

/// Where the clients connect: MariaDB itself or a churnstile in front of it.
struct Target<'a> {
    name: &'static str,
    port: u16,
    login: Login,
    /// The churnstile, whose log a failed run prints and whose CPU time is
    /// measured; `None` for MariaDB.
    proxy: Option<&'a MySqlProxy>,
    /// Connect over this Unix socket instead of TCP (churn only).
    socket: Option<PathBuf>,
}

/// Starts the server and proxies, runs every workload against every
/// target, and stops them again.
fn run_all(settings: &Settings) -> Vec<RunResult> {
    let mariadb = MariaDbServer::start();
    if settings.sysbench {
        prepare_sysbench(&mariadb);
    }
    let session = MySqlProxy::start(&mariadb, "session", settings.size.pool_size);
    let transaction = MySqlProxy::start(&mariadb, "transaction", settings.size.pool_size);
    let targets = [
        Target {
            name: "direct",
            port: mariadb.port(),
            login: DIRECT_USER,
            proxy: None,
            socket: None,
        },
        Target {
            name: "churnstile session",
            port: session.mysql_port,
            login: PROXY_USER,
            proxy: Some(&session),
            socket: None,
        },
        Target {
            name: "churnstile txn",
            port: transaction.mysql_port,
            login: PROXY_USER,
            proxy: Some(&transaction),
            socket: None,
        },
        // What a PHP app on the same host gets with host "localhost".
        Target {
            name: "direct (socket)",
            port: mariadb.port(),
            login: DIRECT_USER,
            proxy: None,
            socket: Some(mariadb.socket_path()),
        },
        Target {
            name: "churnstile txn (socket)",
            port: transaction.mysql_port,
            login: PROXY_USER,
            proxy: Some(&transaction),
            socket: Some(transaction.proxy.mysql_socket()),
        },
    ];
    let mut workloads = vec![Workload::Churn];
    if settings.sysbench {
        workloads.extend([
            Workload::OltpReadOnly(PsMode::Auto),
            Workload::OltpReadOnly(PsMode::Disable),
        ]);
    }
    let mut results = Vec::new();
    for workload in workloads {
        let targets: Vec<&Target> = (targets.iter())
            .filter(|target| workload == Workload::Churn || target.socket.is_none())
            .collect();
        for round in 0..settings.size.rounds {
            for target in turn_order(&targets, round) {
                results.push(run_one(&mariadb, workload, target, settings));
            }
        }
    }
    results
}

/// A churnstile with a MySQL listener in front of `mariadb`.
struct MySqlProxy {
    proxy: Proxy,
    mysql_port: u16,
}

impl MySqlProxy {
    /// Returns once the MySQL listener accepts connections; panics with
    /// churnstile's log if it does not within 20 s.
    fn start(mariadb: &MariaDbServer, pool_mode: &str, pool_size: u64) -> MySqlProxy {
        let mysql_port = free_port();
        let proxy = Proxy::start(&format!(
            "[listen]\n\
             postgres = [\"{HOST}:{{port}}\"]\n\
             mysql = [\"{HOST}:{mysql_port}\"]\n\
             unix_socket_dir = \"{{socket_dir}}\"\n\
             mysql_unix_socket = \"{{socket_dir}}/{MYSQL_SOCKET}\"\n\
             [general]\n\
             auth_type = \"md5\"\n\
             [pool]\n\
             pool_mode = \"{pool_mode}\"\n\
             default_pool_size = {pool_size}\n\
             [databases.{APP_DB}]\n\
             protocol = \"mysql\"\n\
             host = \"{HOST}\"\n\
             port = {server_port}\n\
             dbname = \"{APP_DB}\"\n\
             user = \"{server_user}\"\n\
             password = \"{server_password}\"\n\
             [users.{proxy_user}]\n\
             password = \"{proxy_password}\"\n",
            server_port = mariadb.port(),
            server_user = DIRECT_USER.user,
            server_password = DIRECT_USER.password,
            proxy_user = PROXY_USER.user,
            proxy_password = PROXY_USER.password,
        ));
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, mysql_port));
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "churnstile ({pool_mode} mode) did not accept MySQL clients on {address} within \
                 {LISTEN_TIMEOUT:?}; stderr:\n{}",
                proxy.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
        MySqlProxy { proxy, mysql_port }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PsMode {
    /// Server-side prepared statements (COM_STMT_PREPARE / EXECUTE).
    Auto,
    /// Text queries with the values in them.
    Disable,
}

impl PsMode {
    fn flag(self) -> &'static str {
        match self {
            PsMode::Auto => "--db-ps-mode=auto",
            PsMode::Disable => "--db-ps-mode=disable",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// Connect → `SELECT 1` → close, over and over.
    Churn,
    /// sysbench `oltp_read_only` on persistent connections.
    OltpReadOnly(PsMode),
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::Churn => "connect/SELECT 1/close",
            Workload::OltpReadOnly(PsMode::Auto) => "oltp_read_only ps=auto",
            Workload::OltpReadOnly(PsMode::Disable) => "oltp_read_only ps=off",
        }
    }

    fn rate_unit(self) -> &'static str {
        match self {
            Workload::Churn => "conn/s",
            Workload::OltpReadOnly(_) => "tps",
        }
    }
}

type RunResult = RoundResult<Workload>;

/// What a client program reported, in common.
struct Measured {
    rate: f64,
    qps: Option<f64>,
    failed: u64,
    error: Option<String>,
}

fn run_one(
    mariadb: &MariaDbServer,
    workload: Workload,
    target: &Target,
    settings: &Settings,
) -> RunResult {
    println!("running: {} against {} ...", workload.label(), target.name);
    let opened_before = connections_accepted(mariadb);
    let server_waits_before = time_wait_toward(mariadb.port());
    let target_waits_before = time_wait_toward(target.port);
    let pid = target.proxy.map(|proxy| proxy.proxy.pid());
    let cpu_before = pid.and_then(cpu_time);
    let started = Instant::now();
    let measured = match workload {
        Workload::Churn => run_churn(target, settings),
        Workload::OltpReadOnly(ps_mode) => run_sysbench(mariadb, ps_mode, target, settings),
    };
    let units = measured.rate * started.elapsed().as_secs_f64();
    let cpu_per_unit = cpu_per_unit(cpu_before, pid.and_then(cpu_time), units);
    thread::sleep(CLOSE_SETTLE);
    let time_wait_server = time_wait_toward(mariadb.port())
        .difference(&server_waits_before)
        .count();
    let time_wait_target = time_wait_toward(target.port)
        .difference(&target_waits_before)
        .count();
    // The reading itself is one more connection.
    let upstream_opened = connections_accepted(mariadb).saturating_sub(opened_before + 1);
    if let Some(error) = &measured.error {
        eprintln!(
            "{} against {} failed: {error}",
            workload.label(),
            target.name
        );
        if let Some(proxy) = target.proxy {
            eprintln!(
                "churnstile stderr (last 40 lines):\n{}",
                last_lines(&proxy.proxy.stderr(), 40)
            );
        }
    }
    RunResult {
        workload,
        target: target.name,
        rate: measured.rate,
        cpu_per_unit,
        qps: measured.qps,
        failed: measured.failed,
        upstream_opened,
        time_wait_server,
        time_wait_target,
        error: measured.error,
    }
}

/// MariaDB's `Connections` status counter (connection attempts since it
/// started, counting the one that asks), read over its Unix socket so the
/// reading leaves no TCP socket behind to be counted.
fn connections_accepted(mariadb: &MariaDbServer) -> u64 {
    let output = Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--socket={}", mariadb.socket_path().display()))
        .args(["--user=root", "--batch", "--skip-column-names"])
        .arg("--execute=SHOW GLOBAL STATUS LIKE 'Connections'")
        .output()
        .unwrap_or_else(|e| panic!("running the mariadb client: {e}"));
    let row = String::from_utf8_lossy(&output.stdout);
    row.split_whitespace()
        .nth(1)
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "reading MariaDB's Connections counter: {row:?} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// One churn worker's tally.
#[derive(Debug, Default, PartialEq)]
struct WorkerTally {
    cycles: u64,
    failed: u64,
    /// How long the worker looped.
    seconds: f64,
    first_error: Option<String>,
}

/// Adds up the workers: the rate is the sum of each worker's cycles per
/// second of its own loop, so process start-up does not count.
fn churn_measured(tallies: Result<Vec<WorkerTally>, String>) -> Measured {
    let tallies = match tallies {
        Ok(tallies) => tallies,
        Err(error) => {
            return Measured {
                rate: 0.0,
                qps: None,
                failed: 0,
                error: Some(error),
            };
        }
    };
    let cycles: u64 = tallies.iter().map(|tally| tally.cycles).sum();
    let failed: u64 = tallies.iter().map(|tally| tally.failed).sum();
    let rate = tallies
        .iter()
        .filter(|tally| tally.seconds > 0.0)
        .map(|tally| tally.cycles as f64 / tally.seconds)
        .sum();
    let first_error = tallies.iter().find_map(|tally| tally.first_error.clone());
    let error = if failed > 0 {
        Some(format!(
            "{failed} failed cycles; first: {}",
            first_error.as_deref().unwrap_or("(not reported)")
        ))
    } else if cycles == 0 {
        Some("no cycle completed".to_owned())
    } else {
        None
    };
    Measured {
        rate,
        qps: None,
        failed,
        error,
    }
}

fn run_churn(target: &Target, settings: &Settings) -> Measured {
    churn_measured(match settings.churn_client {
        ChurnClient::Php => churn_with_php(target, settings),
        ChurnClient::Rust => churn_with_mysql_async(target, settings),
    })
}

/// Runs one `php` worker process per client and reads their tallies;
/// kills them if they run far longer than asked.
fn churn_with_php(target: &Target, settings: &Settings) -> Result<Vec<WorkerTally>, String> {
    let dir = temp_dir("php-churn");
    let script = dir.path().join("churn.php");
    fs::write(&script, PHP_CHURN_WORKER)
        .unwrap_or_else(|e| panic!("writing {}: {e}", script.display()));
    let mut workers = Vec::new();
    for worker in 0..settings.size.clients {
        let stdout_path = dir.path().join(format!("worker-{worker}.out"));
        let stderr_path = dir.path().join(format!("worker-{worker}.err"));
        let mut command = Command::new("php");
        command
            .arg(&script)
            .args([
                if target.socket.is_some() {
                    "localhost"
                } else {
                    HOST
                },
                &target.port.to_string(),
                target.login.user,
                target.login.password,
                APP_DB,
            ])
            .args([
                settings.size.seconds.to_string(),
                CYCLE_TIMEOUT.as_secs().to_string(),
            ])
            .arg(target.socket.as_deref().unwrap_or(Path::new("")))
            .stdout(create(&stdout_path))
            .stderr(create(&stderr_path));
        let child = child::spawn_supervised(command).unwrap_or_else(|e| panic!("running php: {e}"));
        workers.push((child, stdout_path, stderr_path));
    }
    let deadline = Instant::now() + settings.size.run_length() + RUN_GRACE;
    let mut tallies = Vec::new();
    let mut problems = Vec::new();
    for (worker, (mut child, stdout_path, stderr_path)) in workers.into_iter().enumerate() {
        let status = wait_or_kill(
            &mut child,
            deadline.saturating_duration_since(Instant::now()),
        );
        let stdout = read_lossy(&stdout_path);
        let stderr = read_lossy(&stderr_path);
        match (status, parse_worker_tally(&stdout, &stderr)) {
            (None, _) => problems.push(format!("php worker {worker} hung and was killed")),
            (Some(status), Some(tally)) if status.success() => tallies.push(tally),
            (Some(status), _) => problems.push(format!(
                "php worker {worker} exited with {}: {}{}",
                child::exit_code(status),
                stdout.trim(),
                stderr.trim()
            )),
        }
    }
    if problems.is_empty() {
        Ok(tallies)
    } else {
        Err(problems.join("; "))
    }
}

/// Waits up to `limit` for a client program to exit; kills it if it has
/// not, and then returns `None`.
fn wait_or_kill(client: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let status = child::wait_exit(client, limit);
    if status.is_none() {
        child::stop(client, Signal::KILL, STOP_GRACE);
    }
    status
}

/// Reads a worker's `cycles N failed N seconds F` line and, from its
/// stderr, `first error: ...`.
fn parse_worker_tally(stdout: &str, stderr: &str) -> Option<WorkerTally> {
    let line = stdout.lines().find(|line| line.starts_with("cycles "))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let [_, cycles, "failed", failed, "seconds", seconds] = words[..] else {
        return None;
    };
    Some(WorkerTally {
        cycles: cycles.parse().ok()?,
        failed: failed.parse().ok()?,
        seconds: seconds.parse().ok()?,
        first_error: stderr
            .lines()
            .find_map(|line| line.strip_prefix("first error: "))
            .map(str::to_owned),
    })
}

/// Runs one mysql_async task per client in a runtime of its own.
fn churn_with_mysql_async(
    target: &Target,
    settings: &Settings,
) -> Result<Vec<WorkerTally>, String> {
    let options = mysql_async::Opts::from(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(HOST)
            .tcp_port(target.port)
            .user(Some(target.login.user))
            .pass(Some(target.login.password))
            .db_name(Some(APP_DB))
            .socket(target.socket.as_deref().and_then(Path::to_str))
            // Otherwise it asks for @@socket and moves to the Unix socket.
            .prefer_socket(false),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("starting a tokio runtime: {e}"));
    let run_length = settings.size.run_length();
    runtime.block_on(async {
        let workers: Vec<_> = (0..settings.size.clients)
            .map(|_| tokio::spawn(churn_worker(options.clone(), run_length)))
            .collect();
        let collect = async {
            let mut tallies = Vec::new();
            for worker in workers {
                tallies.push(
                    worker
                        .await
                        .map_err(|e| format!("churn worker panicked: {e}"))?,
                );
            }
            Ok(tallies)
        };
        tokio::time::timeout(run_length + RUN_GRACE, collect)
            .await
            .unwrap_or_else(|_| Err("churn workers hung".to_owned()))
    })
}

async fn churn_worker(options: mysql_async::Opts, run_length: Duration) -> WorkerTally {
    let started = Instant::now();
    let mut tally = WorkerTally::default();
    while started.elapsed() < run_length {
        let error = match tokio::time::timeout(CYCLE_TIMEOUT, churn_cycle(options.clone())).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(_) => Some(format!("no answer within {CYCLE_TIMEOUT:?}")),
        };
        match error {
            None => tally.cycles += 1,
            Some(error) => {
                tally.failed += 1;
                tally.first_error.get_or_insert(error);
            }
        }
    }
    tally.seconds = started.elapsed().as_secs_f64();
    tally
}

async fn churn_cycle(options: mysql_async::Opts) -> Result<(), String> {
    let mut conn = mysql_async::Conn::new(options)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let one: Option<u32> = conn
        .query_first("SELECT 1")
        .await
        .map_err(|e| format!("SELECT 1: {e}"))?;
    conn.disconnect().await.map_err(|e| format!("close: {e}"))?;
    match one {
        Some(1) => Ok(()),
        other => Err(format!("SELECT 1 returned {other:?}")),
    }
}

/// The options every sysbench call shares: the workload, the tables and
/// where and as whom to connect.
fn sysbench_command(port: u16, login: Login) -> Command {
    let mut command = Command::new("sysbench");
    command
        .args(["oltp_read_only", "--db-driver=mysql"])
        .arg(format!("--tables={SYSBENCH_TABLES}"))
        .arg(format!("--table-size={SYSBENCH_TABLE_SIZE}"))
        .arg(format!("--mysql-host={HOST}"))
        .arg(format!("--mysql-port={port}"))
        .arg(format!("--mysql-user={}", login.user))
        .arg(format!("--mysql-password={}", login.password))
        .arg(format!("--mysql-db={APP_DB}"));
    command
}

/// Creates and fills the sysbench tables, directly on MariaDB.
fn prepare_sysbench(mariadb: &MariaDbServer) {
    println!(
        "preparing: sysbench oltp_read_only --tables={SYSBENCH_TABLES} \
         --table-size={SYSBENCH_TABLE_SIZE} ..."
    );
    let output = sysbench_command(mariadb.port(), DIRECT_USER)
        .arg("prepare")
        .output()
        .unwrap_or_else(|e| panic!("running sysbench prepare: {e}"));
    if !output.status.success() {
        panic!(
            "sysbench prepare failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Runs sysbench against the target, killing it if it runs far longer
/// than `--time` asks for.
fn run_sysbench(
    mariadb: &MariaDbServer,
    ps_mode: PsMode,
    target: &Target,
    settings: &Settings,
) -> Measured {
    let dir = temp_dir("sysbench");
    let stdout_path = dir.path().join("stdout.log");
    let stderr_path = dir.path().join("stderr.log");
    let mut command = sysbench_command(target.port, target.login);
    command
        .arg(ps_mode.flag())
        .arg(format!("--threads={}", settings.size.clients))
        .arg(format!("--time={}", settings.size.seconds))
        .arg("run")
        .stdout(create(&stdout_path))
        .stderr(create(&stderr_path));
    let mut sysbench =
        child::spawn_supervised(command).unwrap_or_else(|e| panic!("running sysbench: {e}"));
    let status = wait_or_kill(&mut sysbench, settings.size.run_length() + RUN_GRACE);
    let stdout = read_lossy(&stdout_path);
    let report = parse_sysbench(&stdout);
    let error = match status {
        None => Some(format!(
            "sysbench hung and was killed after {RUN_GRACE:?} past --time"
        )),
        Some(status) if !status.success() => {
            Some(format!("sysbench exited with {}", child::exit_code(status)))
        }
        Some(_) if report.ignored_errors > 0 => {
            Some(format!("{} ignored errors", report.ignored_errors))
        }
        Some(_) if report.tps.is_none_or(|tps| tps <= 0.0) => {
            Some("sysbench reported no transactions".to_owned())
        }
        Some(_) => None,
    };
    if error.is_some() {
        eprintln!(
            "sysbench stdout:\n{}\nsysbench stderr:\n{}\nMariaDB log (last 20 lines):\n{}",
            last_lines(&stdout, 40),
            last_lines(&read_lossy(&stderr_path), 40),
            last_lines(&mariadb.log(), 20)
        );
    }
    Measured {
        rate: report.tps.unwrap_or(0.0),
        qps: report.qps,
        failed: report.ignored_errors,
        error,
    }
}

/// What sysbench's summary says.
#[derive(Debug, PartialEq)]
struct SysbenchReport {
    tps: Option<f64>,
    qps: Option<f64>,
    ignored_errors: u64,
}

/// Reads `transactions: N (R per sec.)`, `queries: N (R per sec.)` and
/// `ignored errors: N (R per sec.)` from sysbench's summary.
fn parse_sysbench(stdout: &str) -> SysbenchReport {
    let per_second = |rest: &str| {
        let (_, rate) = rest.split_once('(')?;
        first_word(rate).parse().ok()
    };
    let mut report = SysbenchReport {
        tps: None,
        qps: None,
        ignored_errors: 0,
    };
    for line in stdout.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("transactions:") {
            report.tps = per_second(rest);
        } else if let Some(rest) = line.strip_prefix("queries:") {
            report.qps = per_second(rest);
        } else if let Some(rest) = line.strip_prefix("ignored errors:") {
            report.ignored_errors = first_word(rest).parse().unwrap_or(u64::MAX);
        }
    }
    report
}

fn print_table(summaries: &[Summary<Workload>], settings: &Settings) {
    let row = |cells: [&str; 11]| {
        println!(
            "{:<22} | {:<23} | {:>14} | {:>11} | {:>9} | {:>8} | {:>9} | {:>8} | {:>6} | {:>9} | {:>9}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            cells[7],
            cells[8],
            cells[9],
            cells[10]
        );
    };
    println!();
    row([
        "workload",
        "target",
        "median rate",
        "range",
        "vs direct",
        "qps",
        "CPU/unit",
        "upstream",
        "failed",
        "TW→server",
        "TW→target",
    ]);
    println!(
        "{}",
        "-".repeat(22 + 23 + 14 + 11 + 9 + 8 + 9 + 8 + 6 + 9 + 9 + 10 * 3)
    );
    for summary in summaries {
        let unit = format!(" {}", summary.workload.rate_unit());
        let [rate, range, ratio, cpu] = summary.rate_cells(summaries, &unit);
        let qps = summary
            .qps
            .map_or("-".to_owned(), |qps| format!("{qps:.0}"));
        row([
            summary.workload.label(),
            summary.target,
            &rate,
            &range,
            &ratio,
            &qps,
            &cpu,
            &summary.upstream_opened.to_string(),
            &summary.failed.to_string(),
            &summary.time_wait_server.to_string(),
            &summary.time_wait_target.to_string(),
        ]);
    }
    println!();
    println!(
        "median rate / range: over {} rounds of {} s, the targets taking turns; * some rounds \
         failed. Completed connect + SELECT 1 + close cycles per second (churn), transactions \
         per second (sysbench).",
        settings.size.rounds, settings.size.seconds
    );
    println!(
        "CPU/unit: CPU time (user + system) churnstile used per cycle or transaction, median round."
    );
    println!("upstream: connections MariaDB accepted during all rounds (its Connections counter).");
    println!(
        "TW→server / TW→target: TIME_WAIT sockets new since each round started, summed, on \
         connections to MariaDB's port / to the port the clients used (either end); a port the \
         kernel reuses while in TIME_WAIT (net.ipv4.tcp_tw_reuse, on for loopback) counts once."
    );
}

fn report_failures(results: &[RunResult]) -> ExitCode {
    let failures: Vec<String> = results
        .iter()
        .filter_map(|result| {
            let error = result.error.as_ref()?;
            Some(format!(
                "{} against {}: {error}",
                result.workload.label(),
                result.target
            ))
        })
        .collect();
    common::exit_status("load_mysql", &failures)
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// What `cargo test` runs instead of the benchmark: the parsers on samples.
fn check_parsers() {
    assert_eq!(
        parse_worker_tally(
            "cycles 1234 failed 2 seconds 10.000512\n",
            "first error: connect: Too many connections\n"
        ),
        Some(WorkerTally {
            cycles: 1234,
            failed: 2,
            seconds: 10.000512,
            first_error: Some("connect: Too many connections".to_owned()),
        })
    );
    assert_eq!(parse_worker_tally("PHP Fatal error: ...\n", ""), None);
    let measured = churn_measured(Ok(vec![
        WorkerTally {
            cycles: 100,
            seconds: 10.0,
            ..WorkerTally::default()
        },
        WorkerTally {
            cycles: 50,
            seconds: 5.0,
            ..WorkerTally::default()
        },
    ]));
    assert_eq!(
        (measured.rate, measured.failed, measured.error),
        (20.0, 0, None)
    );

    let report = parse_sysbench(
        "SQL statistics:\n\
         \x20   queries performed:\n\
         \x20       read:                            140000\n\
         \x20       other:                           20000\n\
         \x20       total:                           160000\n\
         \x20   transactions:                        10000  (999.50 per sec.)\n\
         \x20   queries:                             160000 (15992.00 per sec.)\n\
         \x20   ignored errors:                      3      (0.30 per sec.)\n\
         \x20   reconnects:                          0      (0.00 per sec.)\n",
    );
    assert_eq!(
        report,
        SysbenchReport {
            tps: Some(999.5),
            qps: Some(15992.0),
            ignored_errors: 3,
        }
    );

    common::check_parsers();
}

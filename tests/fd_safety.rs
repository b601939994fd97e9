//! churnstile never runs out of or leaks file descriptors: it raises its
//! own limit, keeps serving connected clients when accept() hits EMFILE and
//! recovers without spinning, stays flat while the upstream flaps, and ends
//! 20,000 client connect/close cycles of every kind with the descriptors it
//! started with.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use churnstile::host::tcp_sockets;
use support::churn_client::{Address, Login, RawClient};
use support::wait::poll_until;
use support::{APP_DB, MD5_USER, PgServer, Proxy, pg_proxy_config};
use tokio::sync::Mutex;

const POLL: Duration = Duration::from_millis(20);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `condition` every 20 ms until it holds; panics with `what` and the
/// proxy's log after 10 s.
async fn wait_until(proxy: &Proxy, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {SETTLE_TIMEOUT:?}; stderr:\n{}",
            proxy.stderr()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until churnstile holds exactly `expected` descriptors (its closes
/// trail the client's by a moment), listing them if it never does.
async fn assert_fds_settle_at(proxy: &Proxy, expected: usize) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let now = proxy.fd_count();
        if now == expected {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "churnstile holds {now} descriptors, expected {expected}:\n{}",
                fd_targets(proxy.pid())
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Each descriptor of `pid` and what it is, with the TCP connection behind
/// a socket when /proc/net/tcp lists it.
fn fd_targets(pid: u32) -> String {
    let tcp = tcp_sockets().unwrap_or_default();
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| {
                    let target = std::fs::read_link(entry.path()).unwrap_or_default();
                    let target = target.display().to_string();
                    let connection = tcp
                        .iter()
                        .find(|socket| target == format!("socket:[{}]", socket.inode))
                        .map(|socket| {
                            format!(" {} -> {} {}", socket.local, socket.remote, socket.state)
                        })
                        .unwrap_or_default();
                    format!(
                        "{} -> {target}{connection}",
                        entry.file_name().to_string_lossy()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    targets.sort();
    targets.join("\n")
}

/// Descriptors of `pid` numbered below `limit`: all of them when it is out
/// of descriptors. (It may also hold higher ones it inherited, such as the
/// cargo jobserver's pipe.)
fn fds_below(pid: u32, limit: u64) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u64>().ok())
        .filter(|&fd| fd < limit)
        .count() as u64
}

/// User plus system CPU time of `pid`, in clock ticks (USER_HZ, 100 a
/// second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; the slice starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn proxy_addr(proxy: &Proxy) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], proxy.port()))
}

/// A login as md5_user that must succeed.
async fn logged_in(address: &Address) -> RawClient {
    let mut client = RawClient::connect(address).await.unwrap();
    let login = client
        .log_in(MD5_USER.name, MD5_USER.password, APP_DB)
        .await
        .unwrap();
    assert_eq!(login, Login::Ready);
    client
}

/// `sessions` logged in at once, then each sends Terminate (returning once
/// churnstile has closed them all): the pool then holds that many server
/// connections, however many it held before. Sequential sessions would
/// not pin the count down: a session may start while the previous one's
/// connection is still being reset, and open another.
async fn fill_pool(address: &Address, sessions: usize) {
    let mut clients = Vec::new();
    for _ in 0..sessions {
        clients.push(logged_in(address).await);
    }
    for client in clients {
        client.terminate().await.unwrap();
    }
}

#[test]
fn the_soft_fd_limit_is_raised_to_the_hard_limit() {
    let config = "[listen]\n\
                  postgres = [\"127.0.0.1:{port}\"]\n\
                  unix_socket_dir = \"{socket_dir}\"\n\
                  [databases.app]\n\
                  port = 9\n\
                  [users.app]\n\
                  password = \"secret\"\n";
    let proxy = Proxy::start_with_fd_limit(config, 64, 4096);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", proxy.pid())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(open_files[3..5], ["4096", "4096"], "{limits}");
    assert!(
        proxy.stderr().contains(
            "raised the open-file limit (RLIMIT_NOFILE) to its hard limit from=64 to=4096"
        ),
        "{}",
        proxy.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_it_keeps_serving_connected_clients_and_recovers() {
    const FD_LIMIT: u64 = 64;
    let pg = PgServer::start();
    let config = pg_proxy_config(
        &pg,
        "[general]\nmax_client_conn = 500\n[pool]\ndefault_pool_size = 2\n",
    );
    let proxy = Proxy::start_with_fd_limit(&config, FD_LIMIT, FD_LIMIT);
    assert!(
        proxy.stderr().contains(
            "the open-file limit (64) is below what this configuration can use: \
             max_client_conn 500 + 6 server connections (3 pools) + 64 spare = 570"
        ),
        "{}",
        proxy.stderr()
    );
    let connected = proxy
        .connect(MD5_USER.name, MD5_USER.password, APP_DB)
        .await;
    let address = Address::Tcp(proxy_addr(&proxy));
    // A second session and back: the pool now holds both its connections,
    // one idle, as it will at the end.
    fill_pool(&address, 1).await;
    let baseline = proxy.fd_count();

    // More idle connections than churnstile has descriptors left.
    let mut flood = Vec::new();
    for _ in 0..FD_LIMIT * 2 {
        flood.push(
            tokio::net::TcpStream::connect(proxy_addr(&proxy))
                .await
                .unwrap(),
        );
    }
    wait_until(&proxy, "accept() failing with EMFILE", || {
        proxy.stderr().contains("out of file descriptors")
    })
    .await;
    assert_eq!(fds_below(proxy.pid(), FD_LIMIT), FD_LIMIT);

    // Backing off, not spinning: a spinning accept loop burns a whole core.
    let before = cpu_ticks(proxy.pid());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let burnt = cpu_ticks(proxy.pid()) - before;
    assert!(
        burnt < 30,
        "churnstile used {burnt} ticks of CPU in 1 s while out of descriptors"
    );
    assert_eq!(
        fds_below(proxy.pid(), FD_LIMIT),
        FD_LIMIT,
        "still out of descriptors"
    );

    let row = connected.query_one("SELECT 41 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);

    drop(flood);
    wait_until(&proxy, "accepting again", || {
        proxy
            .stderr()
            .contains("accepting again after running out of file descriptors")
    })
    .await;
    let stderr = proxy.stderr();
    let failed: u64 = stderr
        .split("running out of file descriptors failed=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no failure count logged:\n{stderr}"));
    // The accept that hit EMFILE, then a retry every 100 ms through the
    // second above (fewer only if timers ran twice as late).
    assert!(failed >= 5, "{failed} failed accepts counted");

    fill_pool(&address, 1).await;
    let row = connected.query_one("SELECT 6 * 7", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_fds_settle_at(&proxy, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_upstream_leaves_the_fd_count_flat() {
    const RECONNECT: Duration = Duration::from_secs(10);
    const ROUNDS: usize = 3;
    const CLIENTS: usize = 20;
    const POOL_SIZE: usize = 2;
    let mut pg = PgServer::start();
    // A short query_wait_timeout: while the upstream is down each login
    // retries only briefly before its clean 08006.
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        &format!("[pool]\ndefault_pool_size = {POOL_SIZE}\nquery_wait_timeout = 0.1\n"),
    ));
    let address = Address::Tcp(proxy_addr(&proxy));
    fill_pool(&address, POOL_SIZE).await;
    let baseline = proxy.fd_count();

    for _ in 0..ROUNDS {
        tokio::task::block_in_place(|| pg.stop());
        for _ in 0..CLIENTS {
            let mut client = RawClient::connect(&address).await.unwrap();
            let login = client
                .log_in(MD5_USER.name, MD5_USER.password, APP_DB)
                .await
                .unwrap();
            assert_eq!(login, Login::Refused("08006".into()));
            client.wait_closed().await.unwrap();
        }
        // The first client found both idle connections dead and closed them.
        assert_fds_settle_at(&proxy, baseline - POOL_SIZE).await;
        tokio::task::block_in_place(|| pg.restart());
        // The pool's one reconnect back-off (at most 2 s) may hold the first
        // attempt after the restart; then every login succeeds.
        let first = poll_until("a login once the server is back", RECONNECT, async || {
            let mut client = RawClient::connect(&address).await.unwrap();
            match client
                .log_in(MD5_USER.name, MD5_USER.password, APP_DB)
                .await
                .unwrap()
            {
                Login::Ready => Ok(client),
                refused => Err(refused),
            }
        })
        .await;
        first.terminate().await.unwrap();
        for _ in 0..CLIENTS {
            logged_in(&address).await.terminate().await.unwrap();
        }
        fill_pool(&address, POOL_SIZE).await;
        assert_fds_settle_at(&proxy, baseline).await;
    }
}

/// How one connect/close cycle behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cycle {
    /// Log in, send Terminate, wait for churnstile to close.
    Terminate,
    /// Log in, then close without a word.
    Abrupt,
    /// A wrong password: FATAL 28P01.
    WrongPassword,
    /// Close in the middle of the startup packet.
    HalfStartup,
}

const CYCLE_KINDS: [Cycle; 4] = [
    Cycle::Terminate,
    Cycle::Abrupt,
    Cycle::WrongPassword,
    Cycle::HalfStartup,
];

/// What a cycle saw: `Ready`, a SQLSTATE, or how it failed.
async fn run_cycle(kind: Cycle, address: &Address) -> String {
    let Ok(mut client) = RawClient::connect(address).await else {
        return "connect failed".into();
    };
    let login = match kind {
        Cycle::HalfStartup => {
            let sent = client.send_partial_startup().await;
            return if sent.is_ok() { "sent" } else { "send failed" }.into();
        }
        Cycle::WrongPassword => client.log_in(MD5_USER.name, "wrong", APP_DB).await,
        Cycle::Terminate | Cycle::Abrupt => {
            client
                .log_in(MD5_USER.name, MD5_USER.password, APP_DB)
                .await
        }
    };
    match (login, kind) {
        // A session the upstream restart ended between login and Terminate
        // was told why (57P01/08006) before churnstile closed it.
        (Ok(Login::Ready), Cycle::Terminate) => match client.terminate_or_fatal().await {
            Ok(()) => "Ready".into(),
            Err(outcome) => outcome,
        },
        (Ok(Login::Ready), _) => "Ready".into(),
        (Ok(Login::Refused(code)), _) => code,
        (Ok(Login::Closed), _) => "closed".into(),
        (Err(error), _) => format!("error: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_connect_close_cycles_leak_no_descriptor() {
    const CYCLES: usize = 20_000;
    const CONCURRENCY: usize = 8;
    const CYCLE_TIMEOUT: Duration = Duration::from_secs(20);
    let mut pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        &format!("[pool]\ndefault_pool_size = {CONCURRENCY}\n"),
    ));
    let addresses = [
        Address::Tcp(proxy_addr(&proxy)),
        Address::Unix(
            proxy
                .socket_dir()
                .join(format!(".s.PGSQL.{}", proxy.port())),
        ),
    ];
    fill_pool(&addresses[0], CONCURRENCY).await;
    let before = proxy.fd_count();

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes: Arc<Mutex<BTreeMap<(Cycle, String), usize>>> = Arc::default();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (next, outcomes, addresses) =
            (Arc::clone(&next), Arc::clone(&outcomes), addresses.clone());
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= CYCLES {
                    return;
                }
                let kind = CYCLE_KINDS[index % CYCLE_KINDS.len()];
                let address = &addresses[(index / CYCLE_KINDS.len()) % addresses.len()];
                let outcome = tokio::time::timeout(CYCLE_TIMEOUT, run_cycle(kind, address))
                    .await
                    .unwrap_or_else(|_| "timed out".into());
                *outcomes.lock().await.entry((kind, outcome)).or_insert(0) += 1;
            }
        });
    }
    // Restart the upstream halfway through, while cycles keep running.
    let deadline = Instant::now() + Duration::from_secs(120);
    while next.load(Ordering::Relaxed) < CYCLES / 2 {
        assert!(
            Instant::now() < deadline,
            "half the cycles took over 2 minutes"
        );
        tokio::time::sleep(POLL).await;
    }
    let restart_at = started.elapsed();
    // Kept to the end: the logins after the cycles need the server.
    let _pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    let took = started.elapsed();
    let outcomes = outcomes.lock().await.clone();
    eprintln!(
        "{CYCLES} cycles in {took:?} (upstream restarted at {restart_at:?}), outcomes {outcomes:?}"
    );

    let count = |kind: Cycle, outcome: &str| {
        outcomes
            .get(&(kind, outcome.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    let per_kind = CYCLES / CYCLE_KINDS.len();
    assert_eq!(
        count(Cycle::WrongPassword, "28P01"),
        per_kind,
        "{outcomes:?}"
    );
    assert_eq!(count(Cycle::HalfStartup, "sent"), per_kind, "{outcomes:?}");
    for kind in [Cycle::Terminate, Cycle::Abrupt] {
        // Logins while the upstream restarts fail cleanly: 08006 when it is
        // down, 57P03 while it starts, 57P01 for sessions it shuts down.
        let clean_failures = ["08006", "57P01", "57P03"]
            .iter()
            .map(|code| count(kind, code))
            .sum::<usize>();
        assert_eq!(
            count(kind, "Ready") + clean_failures,
            per_kind,
            "{kind:?}: {outcomes:?}"
        );
        assert!(
            count(kind, "Ready") >= per_kind / 2,
            "{kind:?}: {outcomes:?}"
        );
    }

    fill_pool(&addresses[0], CONCURRENCY).await;
    assert_fds_settle_at(&proxy, before).await;
    eprintln!("churnstile held {before} descriptors before the cycles and after them");
}

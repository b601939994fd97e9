//! What clients see, and how churnstile recovers, when the network or the
//! database misbehaves: an upstream that accepts TCP but never answers, a
//! PostgreSQL restart under load, and a client that vanishes without a FIN
//! (in a network namespace the test creates, silenced with `tc netem`).
//! Each test ends by checking, from PostgreSQL's own pg_stat_activity, that
//! churnstile never had more connections upstream than its pool size.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::admin_console::{admin, rows};
use support::pg_client::{scalar, sqlstate};
use support::raw_pg::{RawConnection, app_startup};
use support::wait::eventually;
use support::{APP_DB, MD5_USER, PgServer, Proxy, pg_proxy_config};

const USER: &str = MD5_USER.name;
const PASSWORD: &str = MD5_USER.password;

/// Backends churnstile has open to `app` as md5_user, by PostgreSQL's count,
/// at most `pool_size`.
async fn assert_within_pool_size(pg: &PgServer, pool_size: i64) {
    let backends = pg.backends(APP_DB, USER).await;
    assert!(
        backends <= pool_size,
        "{backends} upstream connections for a pool of {pool_size}"
    );
}

/// A TCP listener that accepts connections and never says a word, keeping
/// them open; counts what it accepted.
async fn silent_upstream() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (port, accepted)
}

/// The error a client gets logging in to `db` and running one query.
async fn login_and_query_error(proxy: &Proxy, db: &str) -> tokio_postgres::Error {
    match proxy.try_connect(USER, PASSWORD, db).await {
        Err(error) => error,
        Ok(client) => client
            .simple_query("SELECT 1")
            .await
            .expect_err("a query through a silent upstream succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_fails_logins_within_server_connect_timeout() {
    let pg = PgServer::start();
    let (silent_port, accepted) = silent_upstream().await;
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        &format!(
            "[pool]\ndefault_pool_size = 2\nserver_connect_timeout = 1\nquery_wait_timeout = 1\n\
             [databases.silent]\nhost = \"127.0.0.1\"\nport = {silent_port}\ndbname = \"app\"\n"
        ),
    ));
    for _ in 0..3 {
        let started = Instant::now();
        let error = login_and_query_error(&proxy, "silent").await;
        let took = started.elapsed();
        assert_eq!(sqlstate(&error), "08006", "{error}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
            "failed after {took:?}, not within server_connect_timeout (1 s) and a margin"
        );
    }
    // One back-off per pool: the three clients did not each retry.
    let attempts = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&attempts),
        "{attempts} connects to the silent upstream"
    );

    // churnstile stays healthy for the other database.
    let client = proxy.connect(USER, PASSWORD, APP_DB).await;
    assert_eq!(
        scalar(&client, "SELECT 'still serving'").await,
        "still serving"
    );
    assert_within_pool_size(&pg, 2).await;
}

/// Runs queries on its own client until `stop`, reconnecting after a
/// failure; returns the SQLSTATEs (or "closed") of the failures it saw.
async fn query_loop(
    proxy: Arc<Proxy>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut client = None;
    for _ in 0..10_000 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if client.is_none() {
            match proxy.try_connect(USER, PASSWORD, APP_DB).await {
                Ok(connected) => client = Some(connected),
                Err(error) => {
                    failures.push(format!("connect {}", sqlstate(&error)));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let connected = client.as_ref().unwrap();
        match connected.simple_query("SELECT pg_sleep(0.01)").await {
            Ok(_) => {
                done.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) => {
                let code = error.code().map_or("closed", |code| code.code());
                failures.push(code.to_owned());
                client = None;
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_fails_only_in_flight_work_and_the_pool_refills() {
    let mut pg = PgServer::start();
    let proxy = Arc::new(Proxy::start(&pg_proxy_config(
        &pg,
        "[pool]\npool_mode = \"transaction\"\ndefault_pool_size = 4\nquery_wait_timeout = 10\n",
    )));
    // Before any client: listeners and the like, no server connection yet.
    let baseline_fds = proxy.fd_count();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(query_loop(
                Arc::clone(&proxy),
                Arc::clone(&stop),
                Arc::clone(&done),
            ))
        })
        .collect();
    eventually(
        "load before the restart",
        Duration::from_secs(20),
        async || done.load(Ordering::SeqCst) >= 100,
    )
    .await;
    assert_within_pool_size(&pg, 4).await;
    tokio::task::block_in_place(|| pg.restart());
    let after_restart = done.load(Ordering::SeqCst);
    eventually(
        "load after the restart",
        Duration::from_secs(30),
        async || done.load(Ordering::SeqCst) >= after_restart + 100,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.unwrap());
    }
    // Only what was in flight failed: at most one failure per client, each
    // a clean "server went away" error.
    assert!(failures.len() <= 6, "{failures:?}");
    for failure in &failures {
        assert!(
            ["57P01", "08006", "closed"].contains(&failure.as_str()),
            "unexpected failure {failure:?} among {failures:?}"
        );
    }
    assert_within_pool_size(&pg, 4).await;
    // The clients' sockets closed; what is left is the refilled pool.
    eventually(
        "churnstile's fds back to their baseline plus the pool",
        Duration::from_secs(10),
        async || proxy.fd_count() <= baseline_fds + 4,
    )
    .await;
}

/// A network namespace with a veth pair to the host, both ends named after
/// this process; removed on drop.
struct Namespace {
    name: String,
    host_link: String,
    host_addr: String,
}

impl Namespace {
    /// `None` (and a message) where network namespaces cannot be created.
    fn create() -> Option<Namespace> {
        let id = std::process::id() % 250 + 1;
        let name = format!("cs-faults-{}", std::process::id());
        let host_link = format!("csf{id}h");
        let ns_link = format!("csf{id}n");
        let ns = Namespace {
            name: name.clone(),
            host_link: host_link.clone(),
            host_addr: format!("10.213.{id}.1"),
        };
        let ns_addr = format!("10.213.{id}.2/24");
        let steps: [&[&str]; 7] = [
            &["netns", "add", &name],
            &[
                "link", "add", &host_link, "type", "veth", "peer", "name", &ns_link,
            ],
            &["link", "set", &ns_link, "netns", &name],
            &[
                "addr",
                "add",
                &format!("{}/24", ns.host_addr),
                "dev",
                &host_link,
            ],
            &["link", "set", &host_link, "up"],
            &["-n", &name, "addr", "add", &ns_addr, "dev", &ns_link],
            &["-n", &name, "link", "set", &ns_link, "up"],
        ];
        for step in steps {
            if !ip(step) {
                eprintln!(
                    "skipping: `ip {}` failed (needs root and network namespaces)",
                    step.join(" ")
                );
                return None;
            }
        }
        Some(ns)
    }

    /// A TCP connection to `port` on the host end, opened from inside the
    /// namespace (by a thread that joins it; the socket stays in it).
    fn connect_from_inside(&self, port: u16) -> std::net::TcpStream {
        let path = format!("/var/run/netns/{}", self.name);
        let addr = format!("{}:{port}", self.host_addr);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a namespace file this thread just opened;
            // it changes only this thread's network namespace.
            let joined = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
            std::net::TcpStream::connect(addr).unwrap()
        })
        .join()
        .unwrap()
    }

    /// Drops every packet both ways, without telling either end.
    fn go_silent(&self) {
        assert!(ip(&["link", "set", &self.host_link, "down"]));
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        ip(&["link", "del", &self.host_link]);
        ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_without_a_fin_is_reaped_by_keepalive() {
    let Some(ns) = Namespace::create() else {
        return;
    };
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        &format!(
            "[general]\nadmin_users = [\"plain_user\"]\n\
             tcp_keepidle = 1\ntcp_keepintvl = 1\ntcp_keepcnt = 2\n\
             [listen]\npostgres = [\"127.0.0.1:{{port}}\", \"{}:{{port}}\"]\n\
             [pool]\ndefault_pool_size = 2\n",
            ns.host_addr
        ),
    ));
    let stream = ns.connect_from_inside(proxy.port());
    stream.set_nonblocking(true).unwrap();
    let mut client = RawConnection::over(tokio::net::TcpStream::from_std(stream).unwrap());
    client.send(&app_startup(USER)).await;
    client.authenticate_md5(MD5_USER).await;
    client.wait_ready().await;
    let console = admin(&proxy).await;
    let app_clients = async || {
        rows(&console, "SHOW CLIENTS")
            .await
            .iter()
            .filter(|row| row["user"] == USER)
            .count()
    };
    assert_eq!(app_clients().await, 1);

    ns.go_silent();
    drop(client);
    // Idle 1 s, then two probes 1 s apart go unanswered: gone in ~3 s.
    let started = Instant::now();
    eventually(
        "the vanished client reaped",
        Duration::from_secs(15),
        async || app_clients().await == 0,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Its server connection went back to the pool: a new client is served.
    let next = proxy.connect(USER, PASSWORD, APP_DB).await;
    assert_eq!(scalar(&next, "SELECT 'served'").await, "served");
    assert_within_pool_size(&pg, 2).await;
}

//! The proxy's life from start to exit: a taken TCP port or Unix socket
//! named with its owner, graceful shutdown (idle clients told 57P01 on
//! SIGINT, pooled upstream connections closed, `shutdown_timeout` cutting
//! off a client that stays; each signal's own test is in signals.rs),
//! `check-config`, the zero-config flags, and no file descriptor leaked by
//! churning clients.

mod support;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use support::pg_client;
use support::raw_pg::{self, RawConnection};
use support::shutdown::{
    ADMIN_SHUTDOWN, PROMPTLY, connect_watched, ending_sqlstate, wait_backends, wait_exit,
};
use support::wait::poll_until;
use support::{APP_DB, MD5_USER, PgServer, ProcessExit, Proxy, Signal, free_port, pg_proxy_config};
use tokio::time::timeout;

const INVALID_PASSWORD: &str = "28P01";

/// A config that names no reachable database: for runs that must fail
/// before any upstream connection is made.
fn config_file(dir: &Path, tcp: SocketAddr, socket_dir: &Path) -> String {
    let text = format!(
        "[listen]\n\
         postgres = [\"{tcp}\"]\n\
         unix_socket_dir = \"{}\"\n\
         \n\
         [databases.app]\n\
         host = \"127.0.0.1\"\n\
         port = 5432\n\
         \n\
         [users.{}]\n\
         password = \"{}\"\n",
        socket_dir.display(),
        MD5_USER.name,
        MD5_USER.password,
    );
    let path = dir.join("churnstile.toml");
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn the_one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got:\n{stderr}");
    lines[0]
}

/// churnstile failed to start with one line saying `address` is in use,
/// held by this test process.
fn assert_reported_in_use_by_us(exit: &ProcessExit, address: &str) {
    assert_ne!(exit.code, 0, "stderr:\n{}", exit.stderr);
    let line = the_one_line(&exit.stderr);
    assert!(
        line.contains(&format!(
            "cannot listen on {address}: address already in use"
        )),
        "{line}"
    );
    assert!(
        line.contains(&format!("held by pid {} \"", std::process::id())),
        "{line}"
    );
}

#[test]
fn a_tcp_port_already_in_use_is_reported_with_its_owner() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = held.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), address, dir.path());

    let exit = Proxy::spawn_expect_exit(&["--config", &config]);

    assert_reported_in_use_by_us(&exit, &address.to_string());
}

#[test]
fn a_unix_socket_already_in_use_is_reported_with_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let socket_path = dir.path().join(format!(".s.PGSQL.{port}"));
    let _held = UnixListener::bind(&socket_path).unwrap();
    let tcp = SocketAddr::from(([127, 0, 0, 1], port));
    let config = config_file(dir.path(), tcp, dir.path());

    let exit = Proxy::spawn_expect_exit(&["--config", &config]);

    assert_reported_in_use_by_us(&exit, &socket_path.display().to_string());
    assert!(socket_path.exists(), "churnstile removed a live socket");
    // The TCP listener it had opened first is gone with it.
    TcpListener::bind(tcp).unwrap_or_else(|e| panic!("{tcp} still taken after exit: {e}"));
}

/// Idle clients get FATAL 57P01, churnstile exits 0 at once and closes its
/// pooled upstream connections and its Unix socket.
async fn idle_clients_are_told_and_the_proxy_exits(signal: Signal) {
    const CLIENTS: usize = 3;
    // At debug1 the server logs a client connection that ends without
    // Terminate ("unexpected EOF on client connection").
    let pg = PgServer::builder()
        .config("log_min_messages = debug1")
        .start();
    let mut proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let socket_file = proxy
        .socket_dir()
        .join(format!(".s.PGSQL.{}", proxy.port()));
    assert!(socket_file.exists());
    let mut sessions = Vec::new();
    for _ in 0..CLIENTS {
        let (client, connection) = connect_watched(&proxy).await;
        client.simple_query("SELECT 1").await.unwrap();
        sessions.push((client, connection));
    }
    wait_backends(&pg, 3).await;

    let signalled_at = Instant::now();
    proxy.send_signal(signal);
    for (_client, connection) in sessions {
        assert_eq!(ending_sqlstate(connection).await, ADMIN_SHUTDOWN);
    }
    let code = wait_exit(&mut proxy, PROMPTLY);
    assert_eq!(
        code,
        Some(0),
        "exit after {signal:?}; stderr:\n{}",
        proxy.stderr()
    );
    assert!(signalled_at.elapsed() < PROMPTLY);
    wait_backends(&pg, 0).await;
    let log = pg.log();
    let dropped: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("unexpected EOF on client connection"))
        .collect();
    assert!(
        dropped.is_empty(),
        "pooled connections were dropped without Terminate:\n{}",
        dropped.join("\n")
    );
    assert!(
        !socket_file.exists(),
        "the Unix socket file was left behind"
    );
    assert_eq!(pg.connections_authorized(APP_DB, MD5_USER.name), CLIENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_tells_idle_clients_and_exits_cleanly() {
    idle_clients_are_told_and_the_proxy_exits(Signal::INT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_cuts_off_a_client_that_stays_in_a_transaction() {
    let pg = PgServer::start();
    let mut proxy = Proxy::start(&pg_proxy_config(&pg, "[general]\nshutdown_timeout = 1\n"));
    let (lingering, _connection) = connect_watched(&proxy).await;
    lingering
        .batch_execute("CREATE TABLE drafts (n int)")
        .await
        .unwrap();
    lingering
        .batch_execute("BEGIN; INSERT INTO drafts VALUES (1)")
        .await
        .unwrap();

    let signalled_at = Instant::now();
    proxy.send_signal(Signal::TERM);
    let code = wait_exit(&mut proxy, PROMPTLY);
    let took = signalled_at.elapsed();
    assert_eq!(code, Some(0), "stderr:\n{}", proxy.stderr());
    assert!(
        took >= Duration::from_secs(1) && took <= Duration::from_secs(3),
        "exited {took:?} after SIGTERM with shutdown_timeout = 1"
    );

    assert!(
        lingering.simple_query("SELECT 1").await.is_err(),
        "the lingering client still has a session"
    );
    wait_backends(&pg, 0).await;
    let direct = pg.client(MD5_USER.name, APP_DB).await;
    assert_eq!(
        pg_client::query_i64(&direct, "SELECT count(*) FROM drafts").await,
        0,
        "the open transaction was committed"
    );
}

#[test]
fn check_config_accepts_the_example_file() {
    let exit = Proxy::spawn_expect_exit(&["check-config", "config/churnstile.toml"]);
    assert_eq!(exit.code, 0, "stderr:\n{}", exit.stderr);
    assert_eq!(
        exit.stdout.trim_end(),
        "config/churnstile.toml: OK (2 databases, 2 users)"
    );
    assert_eq!(exit.stderr, "");
}

#[test]
fn check_config_reports_every_mistake_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    fs::write(
        &path,
        "[listen]\n\
         postgres = [\"localhost:6432\"]\n\
         \n\
         [general]\n\
         max_client_conn = \"many\"\n\
         colour = \"blue\"\n\
         \n\
         [databases.app]\n\
         host = \"127.0.0.1\"\n",
    )
    .unwrap();
    let file = path.display().to_string();

    let exit = Proxy::spawn_expect_exit(&["check-config", &file]);

    assert_eq!(exit.code, 2, "stderr:\n{}", exit.stderr);
    assert_eq!(exit.stdout, "");
    let lines: Vec<&str> = exit.stderr.lines().collect();
    let expected = [
        (
            format!("{file}:2:13: listen.postgres[0]: "),
            "not an IP address",
        ),
        (
            format!("{file}:5:19: general.max_client_conn: "),
            "expected an integer",
        ),
        (format!("{file}:6:1: general.colour: "), "unknown key"),
    ];
    assert_eq!(lines.len(), expected.len(), "stderr:\n{}", exit.stderr);
    for (line, (prefix, message)) in lines.iter().zip(&expected) {
        assert!(line.starts_with(prefix.as_str()), "{line}\nwanted {prefix}");
        assert!(line.contains(message), "{line}\nwanted {message:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_pool_modes_share_one_server_connection_between_clients() {
    let pg = PgServer::start();
    for (index, mode) in ["transaction", "statement"].into_iter().enumerate() {
        let proxy = Proxy::start_zero_config(
            &pg.url(MD5_USER),
            &["--pool-mode", mode, "--pool-size", "1"],
        );
        let first = proxy.connect_as(MD5_USER).await;
        let second = proxy.connect_as(MD5_USER).await;
        for round in 0..3 {
            for client in [&first, &second] {
                let row = client
                    .query_one("SELECT $1::int + 1", &[&round])
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, i32>(0), round + 1, "{mode}");
            }
        }
        assert_eq!(
            pg.connections_authorized(APP_DB, MD5_USER.name),
            index + 1,
            "{mode}: two connected clients took turns on one upstream connection"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_serves_several_upstreams_with_the_sidecar_flags() {
    let pg = PgServer::start();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let socket_dir = tempfile::tempdir().unwrap();
    let second_db = pg.url(MD5_USER).replace("/app", "/postgres");
    let proxy = Proxy::start_args(
        &[
            "--listen",
            &listen,
            "--upstream",
            &pg.url(MD5_USER),
            "--upstream",
            &second_db,
            "--max-client-conn",
            "3",
            "--admin-user",
            MD5_USER.name,
            "--unix-socket-dir",
            socket_dir.path().to_str().unwrap(),
        ],
        port,
    );

    let console = proxy
        .connect(MD5_USER.name, MD5_USER.password, "churnstile")
        .await;
    let databases = support::admin_console::rows(&console, "SHOW DATABASES").await;
    let names: Vec<&str> = databases.iter().map(|row| row["name"].as_str()).collect();
    assert_eq!(names, [APP_DB, "postgres"]);
    let other = proxy
        .connect(MD5_USER.name, MD5_USER.password, "postgres")
        .await;
    assert_eq!(
        pg_client::scalar(&other, "SELECT current_database()").await,
        "postgres"
    );
    let over_unix = proxy.unix_connection_string(MD5_USER.name, MD5_USER.password, APP_DB);
    let over_unix = pg_client::connect(&over_unix.replace(
        &proxy.socket_dir().display().to_string(),
        &socket_dir.path().display().to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(pg_client::scalar(&over_unix, "SELECT 1").await, "1");
    let refused = proxy
        .try_connect(MD5_USER.name, MD5_USER.password, APP_DB)
        .await;
    assert_eq!(
        pg_client::sqlstate(&refused.unwrap_err()),
        "53300",
        "a fourth client is over --max-client-conn 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_pool_size_bounds_upstream_connections() {
    const CLIENTS: usize = 20;
    let pg = PgServer::start();
    let proxy = Proxy::start_zero_config(&pg.url(MD5_USER), &["--pool-size", "2"]);

    for index in 0..CLIENTS {
        let client = proxy.connect_as(MD5_USER).await;
        let row = client
            .query_one("SELECT $1::int", &[&i32::try_from(index).unwrap()])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), i32::try_from(index).unwrap());
    }
    let sequential = pg.connections_authorized(APP_DB, MD5_USER.name);
    assert!(
        (1..=2).contains(&sequential),
        "{sequential} upstream logins"
    );

    // All at once, each holding its session a while: two serve, the rest wait.
    let proxy = std::sync::Arc::new(proxy);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let proxy = std::sync::Arc::clone(&proxy);
            tokio::spawn(async move {
                let client = proxy.connect_as(MD5_USER).await;
                client
                    .simple_query("SELECT pg_sleep(0.1)")
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for task in tasks {
        timeout(Duration::from_secs(30), task)
            .await
            .expect("every client is served in turn")
            .unwrap()
            .unwrap();
    }
    assert_eq!(pg.connections_authorized(APP_DB, MD5_USER.name), 2);
}

#[test]
fn zero_config_listen_without_upstream_is_a_usage_error() {
    let listen = format!("127.0.0.1:{}", free_port());
    let exit = Proxy::spawn_expect_exit(&["--listen", &listen]);
    assert_eq!(exit.code, 2, "stderr:\n{}", exit.stderr);
    assert_eq!(
        exit.stderr.trim_end(),
        "--listen needs an upstream: give --upstream URL, --upstream-file FILE \
         or the CHURNSTILE_UPSTREAM environment variable"
    );
}

#[test]
fn zero_config_unknown_url_scheme_names_the_supported_ones() {
    let listen = format!("127.0.0.1:{}", free_port());
    let exit = Proxy::spawn_expect_exit(&[
        "--listen",
        &listen,
        "--upstream",
        "redis://root:secret@127.0.0.1:6379/app",
    ]);
    assert_eq!(exit.code, 2, "stderr:\n{}", exit.stderr);
    let line = the_one_line(&exit.stderr);
    assert!(line.contains("\"redis://\""), "{line}");
    assert!(line.contains("mysql://"), "{line}");
    assert!(line.contains("postgres://"), "{line}");
    assert!(line.contains("postgresql://"), "{line}");
    assert!(!line.contains("secret"), "the password was echoed: {line}");
}

/// churnstile's open sockets by role, read from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProxyFds {
    total: usize,
    /// TCP connections accepted on the listen port (any state).
    clients: usize,
    /// TCP connections to the PostgreSQL server.
    upstream: usize,
}

/// TCP sockets on this host by inode: (local port, remote port, state).
fn tcp_sockets() -> HashMap<u64, (u16, u16, u8)> {
    let mut sockets = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = |address: &str| {
                let (_, port) = address.rsplit_once(':').unwrap();
                u16::from_str_radix(port, 16).unwrap()
            };
            let state = u8::from_str_radix(fields[3], 16).unwrap();
            let inode: u64 = fields[9].parse().unwrap();
            sockets.insert(inode, (port(fields[1]), port(fields[2]), state));
        }
    }
    sockets
}

fn proxy_fds(proxy: &Proxy, pg: &PgServer) -> ProxyFds {
    const LISTEN: u8 = 0x0A;
    let fd_dir = format!("/proc/{}/fd", proxy.pid());
    let inodes: HashSet<u64> = fs::read_dir(&fd_dir)
        .unwrap()
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?.strip_prefix("socket:[")?;
            target.strip_suffix(']')?.parse().ok()
        })
        .collect();
    let tcp = tcp_sockets();
    let owned = || inodes.iter().filter_map(|inode| tcp.get(inode));
    ProxyFds {
        total: proxy.fd_count(),
        clients: owned()
            .filter(|(local, _, state)| *local == proxy.port() && *state != LISTEN)
            .count(),
        upstream: owned()
            .filter(|(_, remote, _)| *remote == pg.port())
            .count(),
    }
}

/// Polls until churnstile holds no client connection, its upstream
/// connections are exactly the server's live backends, and the counts read
/// the same before and after asking the server (a cancel request or a
/// closing socket in flight would make them differ), then returns its fds.
async fn settled_fds(proxy: &Proxy, pg: &PgServer) -> ProxyFds {
    poll_until(
        "no client connections, one upstream connection per backend, steady counts",
        Duration::from_secs(15),
        async || {
            let fds = proxy_fds(proxy, pg);
            let backends = pg.backends(APP_DB, MD5_USER.name).await;
            let again = proxy_fds(proxy, pg);
            if fds == again && fds.clients == 0 && i64::try_from(fds.upstream).unwrap() == backends
            {
                Ok(fds)
            } else {
                Err(format!(
                    "{fds:?} then {again:?}, {backends} backends upstream"
                ))
            }
        },
    )
    .await
}

/// Connects by hand, sends md5_user's startup packet and returns the MD5
/// salt churnstile asks with. Every read waits at most [`PROMPTLY`].
async fn start_md5_login(proxy: &Proxy) -> (RawConnection, [u8; 4]) {
    let mut connection = RawConnection::connect(proxy.port())
        .await
        .with_read_limit(PROMPTLY);
    connection.send(&raw_pg::app_startup(MD5_USER.name)).await;
    let challenge = connection.expect_message().await;
    (connection, raw_pg::md5_salt(&challenge))
}

/// One client visit of the given kind, ending however that kind ends.
async fn visit(proxy: &Proxy, kind: usize) {
    match kind {
        0 => {
            let client = proxy.connect_as(MD5_USER).await;
            let row = client.query_one("SELECT 1", &[]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), 1);
        }
        1 => {
            let Err(error) = proxy.try_connect(MD5_USER.name, "wrong", APP_DB).await else {
                panic!("logged in with a wrong password");
            };
            let code = error.as_db_error().map(|e| e.code().code());
            assert_eq!(code, Some(INVALID_PASSWORD), "{error}");
        }
        2 => drop(RawConnection::connect(proxy.port()).await),
        3 => {
            let mut connection = RawConnection::connect(proxy.port()).await;
            let packet = raw_pg::app_startup(MD5_USER.name);
            connection.send(&packet[..packet.len() / 2]).await;
        }
        4 => drop(start_md5_login(proxy).await),
        _ => {
            // Logged in, a query running, then gone without Terminate.
            let (mut connection, salt) = start_md5_login(proxy).await;
            connection.send(&raw_pg::md5_password(MD5_USER, salt)).await;
            while connection.expect_message().await.0 != b'Z' {}
            connection.send(&raw_pg::query("SELECT pg_sleep(10)")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_clients_leak_no_file_descriptors() {
    const KINDS: usize = 6;
    const VISITS: usize = 500;
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    for kind in 0..KINDS {
        visit(&proxy, kind).await;
    }
    let warm = settled_fds(&proxy, &pg).await;

    for round in 0..VISITS {
        visit(&proxy, round % KINDS).await;
    }
    let after = settled_fds(&proxy, &pg).await;

    assert!(after.upstream <= 20, "more than the pool: {after:?}");
    assert_eq!(
        after.total - after.upstream,
        warm.total - warm.upstream,
        "descriptors other than pooled server connections changed: warm {warm:?}, after {after:?}"
    );
    let row = proxy
        .connect_as(MD5_USER)
        .await
        .query_one("SELECT 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
}

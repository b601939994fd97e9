//! The Prometheus endpoint as an operator scrapes it: exact client and
//! upstream counts after churn through a small pool, the reuse ratio they
//! imply, refused logins by SQLSTATE, session lifetimes, exact transaction
//! and query counts, bytes, wait and transaction histograms, upstream
//! closes by reason, TIME_WAIT sockets on this host toward an upstream and
//! on a listener, and plain HTTP/1.1 behaviour (keep-alive, 404).

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use churnstile::host::{TcpState, tcp_sockets};
use support::metrics_endpoint::{
    http_get, pool_labels, proxy_with_metrics, sample, scrape_until, value,
};
use support::{APP_DB, MD5_USER, PgServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::SimpleQueryMessage;

const USER: &str = MD5_USER.name;
const PASSWORD: &str = MD5_USER.password;
/// Host gauges are sampled every 5 s; allow a few samples.
const HOST_SAMPLE_WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_through_a_small_pool_shows_every_client_and_few_upstream_connections() {
    const ROUNDS: usize = 4;
    const CONCURRENT: usize = 6;
    const CLIENTS: usize = ROUNDS * CONCURRENT;
    const POOL_SIZE: u64 = 2;
    let pg = PgServer::start();
    let (proxy, metrics) = proxy_with_metrics(&pg, "[pool]\ndefault_pool_size = 2\n");
    let proxy = Arc::new(proxy);
    for _ in 0..ROUNDS {
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENT {
            let proxy = Arc::clone(&proxy);
            clients.spawn(async move {
                let client = proxy.connect(USER, PASSWORD, APP_DB).await;
                let rows = client.simple_query("SELECT 1").await.unwrap();
                assert!(rows.iter().any(|m| matches!(m, SimpleQueryMessage::Row(_))));
            });
        }
        clients.join_all().await;
    }
    let refused = proxy.try_connect(USER, "wrong", APP_DB).await;
    assert!(refused.is_err());

    let pool = pool_labels(&[]);
    let text = scrape_until(
        metrics,
        "churnstile_client_session_seconds_count",
        &pool,
        CLIENTS as f64,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        value(&text, "churnstile_client_logins_total", &pool),
        CLIENTS as f64
    );
    let opened = value(
        &text,
        "churnstile_upstream_connections_opened_total",
        &pool_labels(&[("result", "ok")]),
    );
    assert!(
        (1.0..=POOL_SIZE as f64).contains(&opened),
        "{CLIENTS} clients through a pool of {POOL_SIZE} opened {opened} upstream connections"
    );
    assert_eq!(opened as usize, pg.connections_authorized(APP_DB, USER));
    assert_eq!(
        value(&text, "churnstile_pool_checkouts_total", &pool),
        CLIENTS as f64
    );
    assert_eq!(
        value(&text, "churnstile_pool_reuse_ratio", &pool),
        CLIENTS as f64 / opened
    );
    assert_eq!(
        value(&text, "churnstile_reuse_ratio", &[]),
        CLIENTS as f64 / opened
    );
    assert_eq!(
        value(
            &text,
            "churnstile_client_login_failures_total",
            &[("sqlstate", "28P01")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "churnstile_client_connections_rejected_total",
            &[("reason", "login_failure")]
        ),
        1.0
    );
    assert_eq!(
        value(&text, "churnstile_transactions_total", &pool),
        CLIENTS as f64,
        "one SELECT each"
    );
    // The shortest session bucket (1 ms) exists; the longest (1 h) holds them all.
    assert!(
        sample(
            &text,
            "churnstile_client_session_seconds_bucket",
            &pool_labels(&[("le", "0.001")])
        )
        .is_some()
    );
    assert_eq!(
        value(
            &text,
            "churnstile_client_session_seconds_bucket",
            &pool_labels(&[("le", "3600")])
        ),
        CLIENTS as f64
    );
    assert_eq!(
        value(&text, "churnstile_pool_size", &pool),
        POOL_SIZE as f64
    );
    assert_eq!(
        value(&text, "churnstile_pool_wait_timeouts_total", &pool),
        0.0
    );
    // Every client and the harness's readiness probe were accepted.
    assert!(value(&text, "churnstile_client_connections_total", &[]) >= CLIENTS as f64 + 1.0);
    let text = scrape_until(
        metrics,
        "churnstile_clients_connected",
        &[],
        0.0,
        Duration::from_secs(10),
    )
    .await;
    let active = pool_labels(&[("state", "active")]);
    assert_eq!(value(&text, "churnstile_pool_clients", &active), 0.0);
    let idle_servers = pool_labels(&[("state", "idle")]);
    assert_eq!(
        value(&text, "churnstile_upstream_connections", &idle_servers),
        opened
    );
    assert_eq!(
        value(
            &text,
            "churnstile_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

/// Labels of the app/md5_user pool's series, with `extra` after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_queries_bytes_and_lifetime_closes_are_counted_exactly() {
    /// Explicit transactions of BEGIN, SELECT, COMMIT.
    const EXPLICIT: usize = 3;
    const RESULT_BYTES: usize = 100_000;
    let pg = PgServer::start();
    // server_lifetime = 0: every connection given back is closed as expired.
    let (proxy, metrics) = proxy_with_metrics(
        &pg,
        "[pool]\npool_mode = \"transaction\"\nserver_lifetime = 0\n",
    );
    let client = proxy.connect(USER, PASSWORD, APP_DB).await;
    for round in 0..EXPLICIT {
        client.simple_query("BEGIN").await.unwrap();
        client
            .simple_query(&format!("SELECT {round}"))
            .await
            .unwrap();
        client.simple_query("COMMIT").await.unwrap();
    }
    let rows = client
        .simple_query(&format!("SELECT repeat('x', {RESULT_BYTES})"))
        .await
        .unwrap();
    assert!(rows.iter().any(|m| matches!(m, SimpleQueryMessage::Row(_))));
    client.simple_query("SELECT 1").await.unwrap();
    drop(client);
    let transactions = EXPLICIT + 2;
    let queries = EXPLICIT * 3 + 2;

    let pool = pool_labels(&[]);
    let text = scrape_until(
        metrics,
        "churnstile_client_session_seconds_count",
        &pool,
        1.0,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        value(&text, "churnstile_transactions_total", &pool),
        transactions as f64
    );
    assert_eq!(
        value(&text, "churnstile_queries_total", &pool),
        queries as f64
    );
    let sent = value(&text, "churnstile_client_bytes_sent_total", &pool);
    assert!(sent >= RESULT_BYTES as f64, "{sent} bytes sent");
    let received = value(&text, "churnstile_client_bytes_received_total", &pool);
    assert!(received > 0.0, "{received} bytes received");
    assert_eq!(
        value(
            &text,
            "churnstile_transaction_seconds_bucket",
            &pool_labels(&[("le", "+Inf")])
        ),
        transactions as f64
    );
    assert!(
        value(
            &text,
            "churnstile_transaction_seconds_bucket",
            &pool_labels(&[("le", "60")])
        ) == transactions as f64,
        "every transaction took under a minute"
    );
    // Login, then one checkout per transaction, each waited for once.
    let checkouts = value(&text, "churnstile_pool_checkouts_total", &pool);
    assert_eq!(checkouts, transactions as f64 + 1.0);
    assert_eq!(
        value(
            &text,
            "churnstile_pool_wait_seconds_bucket",
            &pool_labels(&[("le", "+Inf")])
        ),
        checkouts
    );
    let opened = value(
        &text,
        "churnstile_upstream_connections_opened_total",
        &pool_labels(&[("result", "ok")]),
    );
    assert_eq!(opened, checkouts, "none lived to be reused");
    assert_eq!(
        value(
            &text,
            "churnstile_upstream_connections_closed_total",
            &pool_labels(&[("reason", "lifetime")])
        ),
        opened
    );
    assert_eq!(
        value(
            &text,
            "churnstile_upstream_connections_closed_total",
            &pool_labels(&[("reason", "error")])
        ),
        0.0
    );
    assert_eq!(value(&text, "churnstile_clients_pinned", &[]), 0.0);
}

/// Opens a connection to `listener` and closes it from the connecting side
/// first, so that side's socket is left in TIME_WAIT.
fn leave_time_wait(listener: &TcpListener) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    drop(client);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut server, &mut rest).unwrap();
    drop(server);
}

/// TIME_WAIT sockets on this host with `addr` at either end.
fn time_wait_on(addr: SocketAddr) -> usize {
    tcp_sockets()
        .unwrap()
        .iter()
        .filter(|s| s.state == TcpState::TimeWait && (s.local == addr || s.remote == addr))
        .count()
}

#[tokio::test]
async fn time_wait_gauges_count_sockets_left_toward_an_upstream_and_on_a_listener() {
    const UPSTREAM_CLOSES: usize = 5;
    const LISTENER_CLOSES: usize = 4;
    let pg = PgServer::start();
    // A second "upstream" that only this test connects to, so its count is exact.
    let upstream = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    let (proxy, metrics) = proxy_with_metrics(
        &pg,
        &format!("[databases.quiet]\nhost = \"127.0.0.1\"\nport = {upstream_port}\n"),
    );
    for _ in 0..UPSTREAM_CLOSES {
        leave_time_wait(&upstream);
    }
    let label = format!("127.0.0.1:{upstream_port}");
    scrape_until(
        metrics,
        "churnstile_upstream_time_wait_sockets",
        &[("upstream", &label)],
        UPSTREAM_CLOSES as f64,
        HOST_SAMPLE_WAIT,
    )
    .await;

    let listener = SocketAddr::from((Ipv4Addr::LOCALHOST, proxy.port()));
    let before = time_wait_on(listener);
    for _ in 0..LISTENER_CLOSES {
        let client = TcpStream::connect(listener).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        // churnstile closes its end once it reads our FIN; ours then waits.
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut &client, &mut rest).unwrap();
    }
    let expected = before + LISTENER_CLOSES;
    assert_eq!(time_wait_on(listener), expected, "the test's own count");
    let text = scrape_until(
        metrics,
        "churnstile_listener_time_wait_sockets",
        &[("listener", &listener.to_string())],
        expected as f64,
        HOST_SAMPLE_WAIT,
    )
    .await;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let bounds: Vec<f64> = range
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        value(&text, "churnstile_ephemeral_ports", &[]),
        bounds[1] - bounds[0] + 1.0
    );
    let fds = value(&text, "churnstile_open_fds", &[]);
    assert!(
        fds >= 5.0 && fds < value(&text, "churnstile_max_fds", &[]),
        "{fds}"
    );
}

#[tokio::test]
async fn the_endpoint_keeps_connections_alive_and_answers_404_for_unknown_paths() {
    let pg = PgServer::start();
    let (_proxy, metrics) = proxy_with_metrics(&pg, "");
    let mut stream = tokio::net::TcpStream::connect(metrics).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.unwrap();
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains("churnstile_build_info")
        );
    }
    let (status, body) = http_get(metrics, "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert_eq!(body, "not found; served: /metrics, /healthz, /readyz\n");
}

//! Transaction pooling without the cost of a hand-over per transaction: a
//! client keeps its server connection between transactions while nobody
//! else needs it, and gives it back at once when another client waits,
//! when PAUSE drains the pool, or when the connection has outlived
//! `server_lifetime` or sat idle past `server_idle_timeout`. What the
//! admin console and the metrics show of a kept connection, and that no
//! state leaks between clients taking turns on one connection.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::admin_console::{ADMIN_CONFIG, admin, owned, pool_counts, rows};
use support::metrics_endpoint::{pool_labels, proxy_with_metrics, scrape, scrape_until, value};
use support::pg_client::{backend_pid, scalar};
use support::wait::until_equal;
use support::{APP_DB, MD5_USER, PG_SUPERUSER, PgServer, Proxy};
use tokio_postgres::Client;

const WAIT: Duration = Duration::from_secs(10);

/// churnstile in transaction mode with `pool_size` server connections, the
/// admin console, the metrics endpoint and `extra` `[pool]` TOML.
fn proxy(pg: &PgServer, pool_size: usize, extra: &str) -> (Proxy, SocketAddr) {
    proxy_with_metrics(
        pg,
        &format!(
            "{ADMIN_CONFIG}[pool]\npool_mode = \"transaction\"\ndefault_pool_size = {pool_size}\n{extra}"
        ),
    )
}

async fn app_client(proxy: &Proxy) -> Client {
    proxy.connect_as(MD5_USER).await
}

/// Successful upstream connects in a scrape of the metrics.
fn upstream_connects(text: &str) -> f64 {
    value(
        text,
        "churnstile_upstream_connections_opened_total",
        &pool_labels(&[("result", "ok")]),
    )
}

/// churnstile (see [`proxy`]) with its console, and a client that ran a
/// query and so keeps a server connection.
struct Keeper {
    proxy: Proxy,
    metrics: SocketAddr,
    console: Client,
    client: Client,
    /// Backend PID of the kept server connection.
    pid: i32,
}

impl Keeper {
    async fn start(pg: &PgServer, pool_size: usize, extra: &str) -> Keeper {
        let (proxy, metrics) = proxy(pg, pool_size, extra);
        let console = admin(&proxy).await;
        let client = app_client(&proxy).await;
        let pid = backend_pid(&client).await;
        Keeper {
            proxy,
            metrics,
            console,
            client,
            pid,
        }
    }

    /// SHOW POOLS' `sv_active` and `sv_idle`.
    async fn servers(&self) -> Vec<String> {
        pool_counts(&self.console, &["sv_active", "sv_idle"]).await
    }

    /// Upstream connections closed for `reason`, as the metrics say now.
    async fn closed_for(&self, reason: &str) -> f64 {
        value(
            &scrape(self.metrics).await,
            "churnstile_upstream_connections_closed_total",
            &pool_labels(&[("reason", reason)]),
        )
    }
}

/// app/md5_user's SHOW CLIENTS rows as (state, link).
async fn client_states(console: &Client) -> Vec<(String, String)> {
    rows(console, "SHOW CLIENTS")
        .await
        .into_iter()
        .filter(|row| row["database"] == APP_DB)
        .map(|row| (row["state"].clone(), row["link"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_hands_the_only_server_connection_to_the_next_client_at_once() {
    let pg = PgServer::start();
    // Were the kept connection not handed over, the second client would
    // get 53300 after this.
    let keeper = Keeper::start(&pg, 1, "query_wait_timeout = 3\n").await;
    let (console, first, pid) = (&keeper.console, &keeper.client, keeper.pid);
    assert_eq!(
        client_states(console).await,
        [("idle".to_owned(), pid.to_string())],
        "between transactions the client is idle and still linked to its server connection"
    );
    assert_eq!(
        pool_counts(
            console,
            &["cl_active", "cl_waiting", "sv_active", "sv_idle"]
        )
        .await,
        owned(&["1", "0", "1", "0"]),
        "a kept connection is lent, so active"
    );

    let second = app_client(&keeper.proxy).await;
    assert_eq!(backend_pid(&second).await, pid, "the one server connection");
    assert_eq!(
        backend_pid(first).await,
        pid,
        "and back, now that the first client waits"
    );
    assert_eq!(
        pool_counts(console, &["sv_active", "sv_idle", "sv_login"]).await,
        owned(&["1", "0", "0"])
    );
    let text = scrape(keeper.metrics).await;
    assert_eq!(upstream_connects(&text), 1.0);
    assert_eq!(
        value(
            &text,
            "churnstile_upstream_connections",
            &pool_labels(&[("state", "active")])
        ),
        1.0
    );
    assert_eq!(pg.connections_authorized(APP_DB, MD5_USER.name), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_alone_in_its_pool_runs_a_hundred_transactions_on_one_checkout() {
    const TRANSACTIONS: u64 = 100;
    let pg = PgServer::start();
    let (proxy, metrics) = proxy(&pg, 4, "");
    let client = app_client(&proxy).await;
    for round in 0..TRANSACTIONS / 2 {
        assert_eq!(
            scalar(&client, &format!("SELECT {round}")).await,
            round.to_string()
        );
        client
            .batch_execute("BEGIN; SELECT 1; COMMIT")
            .await
            .expect("an explicit transaction");
    }
    let pool = pool_labels(&[]);
    let text = scrape_until(
        metrics,
        "churnstile_transactions_total",
        &pool,
        TRANSACTIONS as f64,
        WAIT,
    )
    .await;
    assert_eq!(
        value(&text, "churnstile_pool_checkouts_total", &pool),
        1.0,
        "the login's checkout served every transaction"
    );
    assert_eq!(upstream_connects(&text), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_taking_turns_on_one_server_connection_never_see_each_others_settings() {
    const ROUNDS: usize = 10;
    let pg = PgServer::start();
    let (proxy, metrics) = proxy(&pg, 1, "query_wait_timeout = 5\n");
    let first = app_client(&proxy).await;
    let second = app_client(&proxy).await;
    let pid = backend_pid(&first).await;
    second
        .batch_execute("SET work_mem = '7MB'; SET myapp.tenant = 'second'")
        .await
        .unwrap();
    for round in 1..=ROUNDS {
        first
            .batch_execute(&format!(
                "SET work_mem = '{round}MB'; SET myapp.tenant = 'first-{round}'"
            ))
            .await
            .unwrap();
        assert_eq!(
            scalar(&first, "SELECT current_setting('work_mem') || ' ' || current_setting('myapp.tenant') || ' ' || pg_backend_pid()").await,
            format!("{round}MB first-{round} {pid}")
        );
        assert_eq!(
            scalar(&second, "SELECT current_setting('work_mem') || ' ' || current_setting('myapp.tenant') || ' ' || pg_backend_pid()").await,
            format!("7MB second {pid}"),
            "round {round}"
        );
    }
    let checkouts = value(
        &scrape(metrics).await,
        "churnstile_pool_checkouts_total",
        &pool_labels(&[]),
    );
    assert!(
        checkouts >= (2 * ROUNDS) as f64,
        "the clients took turns ({checkouts} checkouts)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_completes_while_a_client_keeps_an_idle_server_connection() {
    let pg = PgServer::start();
    let keeper = Keeper::start(&pg, 2, "").await;
    assert_eq!(keeper.servers().await, owned(&["1", "0"]));

    tokio::time::timeout(WAIT, keeper.console.simple_query("PAUSE app"))
        .await
        .expect("PAUSE returns once the kept connection is given back")
        .unwrap();
    assert_eq!(keeper.servers().await, owned(&["0", "0"]));
    assert_eq!(keeper.closed_for("paused").await, 1.0);
    keeper.console.simple_query("RESUME app").await.unwrap();
    assert_eq!(
        scalar(&keeper.client, "SELECT 'after resume'").await,
        "after resume"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lifetime_closes_a_kept_connection_at_the_transaction_boundary() {
    const TRANSACTIONS: usize = 3;
    let pg = PgServer::start();
    let (proxy, metrics) = proxy(&pg, 2, "server_lifetime = 0\n");
    let client = app_client(&proxy).await;
    let mut pids = Vec::new();
    for _ in 0..TRANSACTIONS {
        pids.push(backend_pid(&client).await);
    }
    pids.dedup();
    assert_eq!(
        pids.len(),
        TRANSACTIONS,
        "a new connection each time: {pids:?}"
    );
    scrape_until(
        metrics,
        "churnstile_upstream_connections_closed_total",
        &pool_labels(&[("reason", "lifetime")]),
        // The login's connection too.
        (TRANSACTIONS + 1) as f64,
        WAIT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_goes_back_unasked_past_its_lifetime_or_idle_timeout() {
    let pg = PgServer::start();
    for (setting, reason) in [
        ("server_lifetime = 1\n", "lifetime"),
        ("server_idle_timeout = 1\n", "idle"),
    ] {
        let keeper = Keeper::start(&pg, 2, setting).await;
        scrape_until(
            keeper.metrics,
            "churnstile_upstream_connections_closed_total",
            &pool_labels(&[("reason", reason)]),
            1.0,
            WAIT,
        )
        .await;
        assert_eq!(keeper.servers().await, owned(&["0", "0"]), "{setting}");
        assert_eq!(
            client_states(&keeper.console).await,
            [("idle".into(), String::new())]
        );
        assert_ne!(backend_pid(&keeper.client).await, keeper.pid, "{setting}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_server_ends_is_replaced_without_an_error() {
    let pg = PgServer::start();
    let keeper = Keeper::start(&pg, 2, "").await;
    let superuser = pg.client(PG_SUPERUSER, APP_DB).await;
    assert_eq!(
        scalar(
            &superuser,
            &format!("SELECT pg_terminate_backend({})", keeper.pid)
        )
        .await,
        "t"
    );
    until_equal(
        "the ended connection is closed",
        WAIT,
        owned(&["0", "0"]),
        async || keeper.servers().await,
    )
    .await;
    assert_eq!(keeper.closed_for("error").await, 1.0);
    assert_ne!(backend_pid(&keeper.client).await, keeper.pid);
}

//! MySQL transaction pooling without a hand-over per statement, against a
//! real MariaDB: a client keeps its server connection between transactions
//! while nobody else needs it, and gives it back at once when another
//! client waits, when PAUSE drains the pool, or when the connection has
//! outlived `server_lifetime` or sat idle past `server_idle_timeout`; a
//! kept connection the server ends is replaced without an error, and
//! clients taking turns on one connection never see each other's state.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use mysql_async::Conn;
use support::admin_console::{ADMIN_DB, owned, rows};
use support::metrics_endpoint::{mysql_pool_labels as labels, scrape, scrape_until, value};
use support::mysql_client::{connect, query_drop, scalar, server_connection_id};
use support::wait::until_equal;
use support::{
    APP_DB, MYSQL_APP_USER, MYSQL_OTHER_USER, MariaDbServer, Proxy, free_port,
    mysql_proxy_config_with,
};
use tokio_postgres::Client;

const WAIT: Duration = Duration::from_secs(10);

/// churnstile in transaction mode with `pool_size` server connections, the
/// admin console (for the other user), the metrics endpoint and `extra`
/// `[pool]` TOML.
fn proxy(maria: &MariaDbServer, pool_size: usize, extra: &str) -> (Proxy, SocketAddr) {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let proxy = Proxy::start(&mysql_proxy_config_with(
        maria,
        "transaction",
        pool_size,
        &format!(
            "[general]\nadmin_users = [\"{}\"]\nmetrics_listen = \"{metrics}\"\n[pool]\n{extra}",
            MYSQL_OTHER_USER.name
        ),
    ));
    (proxy, metrics)
}

async fn console(proxy: &Proxy) -> Client {
    proxy
        .connect(MYSQL_OTHER_USER.name, MYSQL_OTHER_USER.password, ADMIN_DB)
        .await
}

/// Successful upstream connects in a scrape of the metrics.
fn upstream_connects(text: &str) -> f64 {
    value(
        text,
        "churnstile_upstream_connections_opened_total",
        &labels(&[("result", "ok")]),
    )
}

/// `columns` of the app/appuser SHOW POOLS row.
async fn pool(console: &Client, columns: &[&str]) -> Vec<String> {
    let row: HashMap<String, String> = rows(console, "SHOW POOLS")
        .await
        .into_iter()
        .find(|row| row["database"] == APP_DB && row["user"] == MYSQL_APP_USER.name)
        .expect("SHOW POOLS lists app/appuser");
    columns.iter().map(|column| row[*column].clone()).collect()
}

/// The app database's SHOW CLIENTS rows as (state, link).
async fn client_states(console: &Client) -> Vec<(String, String)> {
    rows(console, "SHOW CLIENTS")
        .await
        .into_iter()
        .filter(|row| row["database"] == APP_DB)
        .map(|row| (row["state"].clone(), row["link"].clone()))
        .collect()
}

/// Upstream connections closed for `reason`, as the metrics say now.
async fn closed_for(metrics: SocketAddr, reason: &str) -> f64 {
    value(
        &scrape(metrics).await,
        "churnstile_upstream_connections_closed_total",
        &labels(&[("reason", reason)]),
    )
}

/// A client that ran a statement and so keeps a server connection, with
/// that connection's thread id.
async fn keeper(proxy: &Proxy) -> (Conn, u64) {
    let mut client = connect(proxy, MYSQL_APP_USER).await;
    let thread = server_connection_id(&mut client).await;
    (client, thread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_hands_the_only_server_connection_to_the_next_client_at_once() {
    let maria = MariaDbServer::start();
    // Were the kept connection not handed over, the second client would
    // get 1040 after this.
    let (proxy, metrics) = proxy(&maria, 1, "query_wait_timeout = 3\n");
    let console = console(&proxy).await;
    let (mut first, thread) = keeper(&proxy).await;
    assert_eq!(
        client_states(&console).await,
        [("idle".to_owned(), thread.to_string())],
        "between transactions the client is idle and still linked to its server connection"
    );
    assert_eq!(
        pool(
            &console,
            &["cl_active", "cl_waiting", "sv_active", "sv_idle"]
        )
        .await,
        owned(&["1", "0", "1", "0"]),
        "a kept connection is lent, so active"
    );

    let mut second = connect(&proxy, MYSQL_APP_USER).await;
    assert_eq!(
        server_connection_id(&mut second).await,
        thread,
        "the one server connection"
    );
    assert_eq!(
        server_connection_id(&mut first).await,
        thread,
        "and back, now that the first client waits"
    );
    let text = scrape(metrics).await;
    assert_eq!(upstream_connects(&text), 1.0);
    assert_eq!(
        value(
            &text,
            "churnstile_upstream_connections",
            &labels(&[("state", "active")])
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_alone_in_its_pool_runs_a_hundred_statements_on_one_checkout() {
    const STATEMENTS: u64 = 100;
    let maria = MariaDbServer::start();
    let (proxy, metrics) = proxy(&maria, 4, "");
    let mut client = connect(&proxy, MYSQL_APP_USER).await;
    for round in 0..STATEMENTS / 2 {
        assert_eq!(
            scalar(&mut client, &format!("SELECT {round}")).await,
            round.to_string()
        );
        query_drop(&mut client, "BEGIN").await;
        query_drop(&mut client, "COMMIT").await;
    }
    let text = scrape(metrics).await;
    assert_eq!(
        value(&text, "churnstile_pool_checkouts_total", &labels(&[])),
        1.0,
        "the first statement's checkout served every one after it"
    );
    assert_eq!(upstream_connects(&text), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_taking_turns_on_one_server_connection_never_see_each_others_state() {
    const ROUNDS: usize = 10;
    let maria = MariaDbServer::start();
    let (proxy, metrics) = proxy(&maria, 1, "query_wait_timeout = 5\n");
    let mut first = connect(&proxy, MYSQL_APP_USER).await;
    let mut second = connect(&proxy, MYSQL_APP_USER).await;
    let thread = server_connection_id(&mut first).await;
    query_drop(
        &mut second,
        "SET SESSION sql_mode = 'ANSI_QUOTES', SESSION time_zone = '+07:00'",
    )
    .await;
    let state = "SELECT CONCAT_WS(' ', @@SESSION.sql_mode, @@SESSION.time_zone, @@SESSION.wait_timeout, CONNECTION_ID())";
    for round in 1..=ROUNDS {
        query_drop(
            &mut first,
            &format!("SET SESSION sql_mode = '', SESSION time_zone = '+{round:02}:30', SESSION wait_timeout = {}", 1000 + round),
        )
        .await;
        assert_eq!(
            scalar(&mut first, state).await,
            format!(" +{round:02}:30 {} {thread}", 1000 + round)
        );
        assert_eq!(
            scalar(&mut second, state).await,
            format!("ANSI_QUOTES +07:00 28800 {thread}"),
            "round {round}"
        );
    }
    let checkouts = value(
        &scrape(metrics).await,
        "churnstile_pool_checkouts_total",
        &labels(&[]),
    );
    assert!(
        checkouts >= (2 * ROUNDS) as f64,
        "the clients took turns ({checkouts} checkouts)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_completes_while_a_client_keeps_an_idle_server_connection() {
    let maria = MariaDbServer::start();
    let (proxy, metrics) = proxy(&maria, 2, "");
    let console = console(&proxy).await;
    let (mut client, _) = keeper(&proxy).await;
    assert_eq!(
        pool(&console, &["sv_active", "sv_idle"]).await,
        owned(&["1", "0"])
    );

    tokio::time::timeout(WAIT, console.simple_query(&format!("PAUSE {APP_DB}")))
        .await
        .expect("PAUSE returns once the kept connection is given back")
        .unwrap();
    assert_eq!(
        pool(&console, &["sv_active", "sv_idle"]).await,
        owned(&["0", "0"])
    );
    assert_eq!(closed_for(metrics, "paused").await, 1.0);
    console
        .simple_query(&format!("RESUME {APP_DB}"))
        .await
        .unwrap();
    assert_eq!(
        scalar(&mut client, "SELECT 'after resume'").await,
        "after resume"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lifetime_closes_a_kept_connection_at_the_statement_boundary() {
    const STATEMENTS: usize = 3;
    let maria = MariaDbServer::start();
    let (proxy, metrics) = proxy(&maria, 2, "server_lifetime = 0\n");
    let mut client = connect(&proxy, MYSQL_APP_USER).await;
    let mut threads = Vec::new();
    for _ in 0..STATEMENTS {
        threads.push(server_connection_id(&mut client).await);
    }
    threads.dedup();
    assert_eq!(
        threads.len(),
        STATEMENTS,
        "a new connection each time: {threads:?}"
    );
    scrape_until(
        metrics,
        "churnstile_upstream_connections_closed_total",
        &labels(&[("reason", "lifetime")]),
        STATEMENTS as f64,
        WAIT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_goes_back_unasked_past_its_lifetime_or_idle_timeout() {
    let maria = MariaDbServer::start();
    for (setting, reason) in [
        ("server_lifetime = 1\n", "lifetime"),
        ("server_idle_timeout = 1\n", "idle"),
    ] {
        let (proxy, metrics) = proxy(&maria, 2, setting);
        let console = console(&proxy).await;
        let (mut client, thread) = keeper(&proxy).await;
        scrape_until(
            metrics,
            "churnstile_upstream_connections_closed_total",
            &labels(&[("reason", reason)]),
            1.0,
            WAIT,
        )
        .await;
        assert_eq!(
            pool(&console, &["sv_active", "sv_idle"]).await,
            owned(&["0", "0"]),
            "{setting}"
        );
        assert_eq!(
            client_states(&console).await,
            [("idle".to_owned(), String::new())]
        );
        assert_ne!(server_connection_id(&mut client).await, thread, "{setting}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_server_ends_is_replaced_without_an_error() {
    let maria = MariaDbServer::start();
    let (proxy, metrics) = proxy(&maria, 2, "");
    let console = console(&proxy).await;
    let (mut client, thread) = keeper(&proxy).await;
    maria.query(&format!("KILL CONNECTION {thread}"));
    until_equal(
        "the ended connection is closed",
        WAIT,
        owned(&["0", "0"]),
        async || pool(&console, &["sv_active", "sv_idle"]).await,
    )
    .await;
    assert_eq!(closed_for(metrics, "error").await, 1.0);
    assert_ne!(server_connection_id(&mut client).await, thread);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_for_a_client_keeping_an_idle_connection_costs_no_upstream_connection() {
    let maria = MariaDbServer::start();
    let (proxy, _) = proxy(&maria, 2, "");
    let (mut keeper, thread) = keeper(&proxy).await;
    let mut killer = connect(&proxy, MYSQL_APP_USER).await;
    query_drop(&mut killer, "SELECT 1").await;
    let connections = maria.connections_total();
    query_drop(&mut killer, &format!("KILL QUERY {}", keeper.id())).await;
    assert_eq!(
        maria.connections_total(),
        connections + 1,
        "only this reading connected: nothing ran for a KILL QUERY to stop"
    );
    assert_eq!(server_connection_id(&mut keeper).await, thread);
}

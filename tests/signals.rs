//! The signals an operator (or systemd, or logrotate) sends, with
//! PgBouncer's meanings: SIGHUP reloads the configuration file, SIGUSR1
//! pauses every pool and SIGUSR2 resumes it, SIGTERM closes idle server
//! connections and waits for clients to leave, SIGINT lets transactions commit and then tells clients 57P01, and
//! a second SIGTERM or SIGINT exits at once.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::admin_console::{ADMIN_CONFIG, admin, owned, pool_counts, rows};
use support::pg_client::{self, scalar};
use support::shutdown::{
    ADMIN_SHUTDOWN, PROMPTLY, assert_clean_exit, connect_watched, ending_sqlstate, wait_backends,
    wait_exit, wait_refused,
};
use support::wait::until_equal;
use support::{APP_DB, MD5_USER, PgServer, Proxy, Signal, free_port, pg_proxy_config};

/// Writes a working config for `pg` listening on `port`, with the admin
/// console and `extra` merged over it, to `path`.
fn write_config(path: &Path, pg: &PgServer, port: u16, extra: &str) {
    let config = pg_proxy_config(pg, &format!("{ADMIN_CONFIG}{extra}"))
        .replace("{port}", &port.to_string())
        .replace("{socket_dir}", "");
    std::fs::write(path, config).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_changed_pool_size_and_the_process_lives() {
    let pg = PgServer::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("churnstile.toml");
    write_config(&path, &pg, port, "[pool]\ndefault_pool_size = 2\n");
    let mut proxy = Proxy::start_args(&["--config", path.to_str().unwrap()], port);
    let console = admin(&proxy).await;
    let pool_size = async || rows(&console, "SHOW DATABASES").await[0]["pool_size"].clone();
    assert_eq!(pool_size().await, "2");

    write_config(&path, &pg, port, "[pool]\ndefault_pool_size = 7\n");
    proxy.send_signal(Signal::HUP);
    until_equal(
        "pool_size after SIGHUP",
        PROMPTLY,
        "7".to_owned(),
        pool_size,
    )
    .await;
    let config = rows(&console, "SHOW CONFIG").await;
    let setting = config
        .iter()
        .find(|row| row["key"] == "default_pool_size")
        .unwrap();
    assert_eq!(setting["value"], "7");

    std::fs::write(&path, "[pool]\ndefault_pool_size = 0\n").unwrap();
    proxy.send_signal(Signal::HUP);
    support::wait::eventually("the broken file is logged", PROMPTLY, async || {
        proxy
            .stderr()
            .contains("SIGHUP: configuration not reloaded")
    })
    .await;
    assert_eq!(pool_size().await, "7", "a broken file changes nothing");
    assert_eq!(wait_exit(&mut proxy, Duration::ZERO), None, "still running");
    let client = proxy.connect_as(MD5_USER).await;
    assert_eq!(scalar(&client, "SELECT 1").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_holds_new_queries_until_sigusr2() {
    let pg = PgServer::start();
    let config = format!("{ADMIN_CONFIG}[pool]\npool_mode = \"transaction\"\n");
    let mut proxy = Proxy::start(&pg_proxy_config(&pg, &config));
    let console = admin(&proxy).await;
    let client = Arc::new(proxy.connect_as(MD5_USER).await);
    assert_eq!(scalar(&client, "SELECT 1").await, "1");

    proxy.send_signal(Signal::USR1);
    until_equal(
        "paused after SIGUSR1",
        PROMPTLY,
        "1".to_owned(),
        async || rows(&console, "SHOW DATABASES").await[0]["paused"].clone(),
    )
    .await;
    let query = tokio::spawn({
        let client = Arc::clone(&client);
        async move { scalar(&client, "SELECT 'after SIGUSR2'").await }
    });
    until_equal(
        "the query waits while paused",
        PROMPTLY,
        owned(&["1"]),
        async || pool_counts(&console, &["cl_waiting"]).await,
    )
    .await;
    assert!(!query.is_finished());

    proxy.send_signal(Signal::USR2);
    let answer = tokio::time::timeout(PROMPTLY, query)
        .await
        .expect("served after SIGUSR2")
        .unwrap();
    assert_eq!(answer, "after SIGUSR2");
    assert_eq!(rows(&console, "SHOW DATABASES").await[0]["paused"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_a_connected_idle_client_to_leave() {
    let pg = PgServer::start();
    let mut proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let (client, connection) = connect_watched(&proxy).await;
    assert_eq!(scalar(&client, "SELECT 1").await, "1");

    proxy.send_signal(Signal::TERM);
    wait_refused(proxy.port()).await;
    assert_eq!(
        scalar(&client, "SELECT 'still served'").await,
        "still served",
        "a connected client goes on working"
    );
    assert_eq!(
        wait_exit(&mut proxy, Duration::ZERO),
        None,
        "churnstile exited with a client connected"
    );

    drop(client);
    let ended = tokio::time::timeout(PROMPTLY, connection)
        .await
        .expect("the connection closes")
        .unwrap();
    assert!(ended.is_ok(), "the client left by itself: {ended:?}");
    assert_clean_exit(&mut proxy, &pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_idle_server_connections_while_the_client_stays() {
    let pg = PgServer::start();
    let config = "[pool]\npool_mode = \"transaction\"\n";
    let mut proxy = Proxy::start(&pg_proxy_config(&pg, config));
    let (client, _connection) = connect_watched(&proxy).await;
    assert_eq!(scalar(&client, "SELECT 1").await, "1");
    wait_backends(&pg, 1).await;

    proxy.send_signal(Signal::TERM);
    wait_backends(&pg, 0).await;
    assert_eq!(
        scalar(&client, "SELECT 'still served'").await,
        "still served",
        "the client stays connected and is served"
    );
    wait_backends(&pg, 0).await;
    assert_eq!(wait_exit(&mut proxy, Duration::ZERO), None, "still running");
    drop(client);
    assert_clean_exit(&mut proxy, &pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_lets_an_open_transaction_commit_then_tells_the_client() {
    let pg = PgServer::start();
    let mut proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let (busy, busy_connection) = connect_watched(&proxy).await;
    let (_idle, idle_connection) = connect_watched(&proxy).await;
    busy.batch_execute("CREATE TABLE orders (n int)")
        .await
        .unwrap();
    busy.batch_execute("BEGIN; INSERT INTO orders VALUES (1)")
        .await
        .unwrap();

    proxy.send_signal(Signal::INT);
    assert_eq!(ending_sqlstate(idle_connection).await, ADMIN_SHUTDOWN);
    wait_refused(proxy.port()).await;
    assert_eq!(
        wait_exit(&mut proxy, Duration::ZERO),
        None,
        "churnstile exited with a transaction open"
    );

    busy.batch_execute("INSERT INTO orders VALUES (2)")
        .await
        .unwrap();
    busy.batch_execute("COMMIT").await.unwrap();
    assert_eq!(ending_sqlstate(busy_connection).await, ADMIN_SHUTDOWN);
    assert_clean_exit(&mut proxy, &pg).await;
    assert!(
        proxy
            .stderr()
            .contains("pooler error: terminating connection due to administrator command"),
        "log_pooler_errors: {}",
        proxy.stderr()
    );
    let direct = pg.client(MD5_USER.name, APP_DB).await;
    assert_eq!(
        pg_client::query_i64(&direct, "SELECT count(*) FROM orders").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let pg = PgServer::start();
    for (first, second) in [(Signal::TERM, Signal::TERM), (Signal::TERM, Signal::INT)] {
        let mut proxy = Proxy::start(&pg_proxy_config(&pg, "[general]\nshutdown_timeout = 60\n"));
        let (client, _connection) = connect_watched(&proxy).await;
        client
            .batch_execute("BEGIN; SELECT 1")
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        proxy.send_signal(first);
        wait_refused(proxy.port()).await;
        assert_eq!(wait_exit(&mut proxy, Duration::ZERO), None);
        let signalled_at = Instant::now();
        proxy.send_signal(second);
        assert_eq!(
            wait_exit(&mut proxy, PROMPTLY),
            Some(0),
            "{first:?} then {second:?}; stderr:\n{}",
            proxy.stderr()
        );
        assert!(signalled_at.elapsed() < PROMPTLY);
        assert!(
            proxy.stderr().contains("exiting now"),
            "stderr:\n{}",
            proxy.stderr()
        );
    }
}

//! The admin console as an operator uses it through a real client
//! (tokio-postgres, simple query protocol): SHOW POOLS, CLIENTS, SERVERS,
//! STATS, CHURN, DATABASES, CONFIG and VERSION describe what is connected
//! and what it did; PAUSE
//! holds new queries and RESUME lets them finish; KILL disconnects a
//! database's clients; RELOAD applies a re-read config file; SHUTDOWN
//! WAIT_FOR_CLIENTS waits for clients to leave; non-admin
//! users and unknown commands get clear errors.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::admin_console::{ADMIN_CONFIG, ADMIN_DB, admin, owned, pool_counts, rows};
use support::pg_client::{backend_pid, scalar, sqlstate};
use support::wait::until_equal;
use support::{APP_DB, MD5_USER, PLAIN_USER, PgServer, Proxy, free_port, pg_proxy_config};
use tokio_postgres::{Client, SimpleQueryMessage};

const WAIT: Duration = Duration::from_secs(10);

fn proxy(pg: &PgServer, extra: &str) -> Proxy {
    Proxy::start(&pg_proxy_config(pg, &format!("{ADMIN_CONFIG}{extra}")))
}

async fn app_client(proxy: &Proxy) -> Client {
    proxy
        .connect(MD5_USER.name, MD5_USER.password, APP_DB)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_pools_clients_and_servers_describe_connected_and_waiting_clients() {
    let pg = PgServer::start();
    let proxy = Arc::new(proxy(&pg, "[pool]\ndefault_pool_size = 2\n"));
    let console = admin(&proxy).await;
    let first = app_client(&proxy).await;
    let second = app_client(&proxy).await;
    let pids = [backend_pid(&first).await, backend_pid(&second).await];

    let waiter = tokio::spawn({
        let proxy = Arc::clone(&proxy);
        async move { scalar(&app_client(&proxy).await, "SELECT 'served'").await }
    });
    let columns = [
        "cl_active",
        "cl_waiting",
        "sv_active",
        "sv_idle",
        "sv_login",
        "pool_mode",
    ];
    until_equal(
        "a third client waits for the pool of 2",
        WAIT,
        owned(&["2", "1", "2", "0", "0", "session"]),
        async || pool_counts(&console, &columns).await,
    )
    .await;
    let pools = rows(&console, "SHOW POOLS").await;
    let columns: Vec<&String> = {
        let mut names: Vec<&String> = pools[0].keys().collect();
        names.sort();
        names
    };
    assert_eq!(
        columns,
        [
            "cl_active",
            "cl_active_cancel_req",
            "cl_waiting",
            "cl_waiting_cancel_req",
            "database",
            "load_balance_hosts",
            "maxwait",
            "maxwait_us",
            "pool_mode",
            "sv_active",
            "sv_active_cancel",
            "sv_being_canceled",
            "sv_idle",
            "sv_login",
            "sv_tested",
            "sv_used",
            "user"
        ]
    );
    assert_eq!(pools.len(), 3, "one pool per (database, user): {pools:?}");

    let clients = rows(&console, "SHOW CLIENTS").await;
    assert_eq!(clients.len(), 3, "{clients:?}");
    let mut states: Vec<&str> = clients.iter().map(|c| c["state"].as_str()).collect();
    states.sort();
    assert_eq!(states, ["active", "active", "waiting"]);
    for client in &clients {
        assert_eq!(
            (
                client["type"].as_str(),
                client["user"].as_str(),
                client["database"].as_str()
            ),
            ("C", MD5_USER.name, APP_DB)
        );
        assert_eq!(client["addr"], "127.0.0.1");
        assert_eq!(client["local_port"], proxy.port().to_string());
        assert!(client["connect_time"].ends_with(" UTC"));
    }
    let mut links: Vec<String> = clients
        .iter()
        .map(|c| c["link"].clone())
        .filter(|l| !l.is_empty())
        .collect();
    links.sort();
    let mut expected: Vec<String> = pids.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(links, expected, "active clients link to their backends");

    let servers = rows(&console, "SHOW SERVERS").await;
    assert_eq!(servers.len(), 2, "{servers:?}");
    for server in &servers {
        assert_eq!(
            (server["type"].as_str(), server["state"].as_str()),
            ("S", "active")
        );
        assert!(expected.contains(&server["remote_pid"]));
        assert_eq!(server["port"], pg.port().to_string());
        let holder = clients
            .iter()
            .find(|c| c["id"] == server["link"])
            .expect("linked client");
        assert_eq!(holder["link"], server["remote_pid"]);
    }

    drop(first);
    assert_eq!(waiter.await.unwrap(), "served");
    until_equal(
        "the waiter got a connection",
        WAIT,
        owned(&["0"]),
        async || pool_counts(&console, &["cl_waiting"]).await,
    )
    .await;
    let stats = rows(&console, "SHOW STATS").await;
    let app = stats.iter().find(|row| row["database"] == APP_DB).unwrap();
    assert_eq!(app["total_client_logins"], "3");
    assert_eq!(app["total_server_assignment_count"], "3");
    assert_eq!(app["total_server_connections"], "2");
    assert_eq!(app["reuse_ratio"], "1.50");
    // Two pg_backend_pid() queries and the waiter's, each its own transaction.
    assert_eq!(app["total_xact_count"], "3");
    assert_eq!(app["total_query_count"], "3");
    for column in ["total_received", "total_sent", "total_xact_time"] {
        let value: u64 = app[column].parse().unwrap();
        assert!(value > 0, "{column} = {value}");
    }
    let average: u64 = app["avg_xact_time"].parse().unwrap();
    assert!(average <= app["total_xact_time"].parse().unwrap());
    drop(second);
}

#[tokio::test]
async fn show_churn_sets_client_connects_against_upstream_connects_and_time_wait() {
    const CLIENTS: usize = 4;
    let pg = PgServer::start();
    // server_lifetime = 0: each client's upstream connection is closed by
    // churnstile when the client leaves, leaving a TIME_WAIT socket here.
    let proxy = proxy(&pg, "[pool]\nserver_lifetime = 0\n");
    for _ in 0..CLIENTS {
        let client = app_client(&proxy).await;
        assert_eq!(scalar(&client, "SELECT 'churn'").await, "churn");
    }
    let console = admin(&proxy).await;
    let upstream = format!("{}:{}", pg.host(), pg.port());
    let row = support::wait::poll_until(
        "SHOW CHURN counts every client's upstream connection closed",
        WAIT,
        async || {
            let rows = rows(&console, "SHOW CHURN").await;
            let row = rows
                .into_iter()
                .find(|row| row["database"] == APP_DB && row["user"] == MD5_USER.name)
                .expect("SHOW CHURN lists app/md5_user");
            let time_wait: usize = row["time_wait"].parse().unwrap();
            if time_wait >= CLIENTS {
                Ok(row)
            } else {
                Err(row)
            }
        },
    )
    .await;
    assert_eq!(row["client_connects"], CLIENTS.to_string());
    assert_eq!(row["upstream_connects"], CLIENTS.to_string());
    assert_eq!(row["upstream_connect_failures"], "0");
    assert_eq!(row["reuse_ratio"], "1.00");
    assert_eq!(row["upstream"], upstream);
    let other_users = rows(&console, "SHOW CHURN")
        .await
        .into_iter()
        .filter(|row| row["user"] != MD5_USER.name)
        .map(|row| row["client_connects"].clone())
        .collect::<Vec<_>>();
    assert_eq!(other_users, owned(&["0", "0"]), "one row per pool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_makes_new_queries_wait_and_resume_lets_them_complete() {
    let pg = PgServer::start();
    let proxy = proxy(
        &pg,
        "[pool]\npool_mode = \"transaction\"\ndefault_pool_size = 2\n",
    );
    let console = admin(&proxy).await;
    let client = Arc::new(app_client(&proxy).await);
    assert_eq!(scalar(&client, "SELECT 1").await, "1");

    let paused = console.simple_query("PAUSE app").await.unwrap();
    assert!(matches!(
        paused.last(),
        Some(SimpleQueryMessage::CommandComplete(_))
    ));
    assert_eq!(
        pool_counts(&console, &["sv_active", "sv_idle"]).await,
        ["0", "0"],
        "drained"
    );
    let databases = rows(&console, "SHOW DATABASES").await;
    assert_eq!(databases[0]["name"], APP_DB);
    assert_eq!(databases[0]["paused"], "1");

    let query = tokio::spawn({
        let client = Arc::clone(&client);
        async move { client.simple_query("SELECT 'after resume'").await }
    });
    until_equal(
        "the query waits while paused",
        WAIT,
        owned(&["1"]),
        async || pool_counts(&console, &["cl_waiting"]).await,
    )
    .await;
    assert!(!query.is_finished());
    console.simple_query("RESUME app").await.unwrap();
    let answer = tokio::time::timeout(WAIT, query)
        .await
        .expect("served after RESUME")
        .unwrap();
    let answer = answer.expect("no error after RESUME");
    assert!(
        answer.iter().any(
            |m| matches!(m, SimpleQueryMessage::Row(row) if row.get(0) == Some("after resume"))
        )
    );
    assert_eq!(rows(&console, "SHOW DATABASES").await[0]["paused"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_disconnects_the_databases_clients_until_resume() {
    let pg = PgServer::start();
    let proxy = Arc::new(proxy(&pg, ""));
    let console = admin(&proxy).await;
    let client = app_client(&proxy).await;
    let pid = backend_pid(&client).await;
    console.simple_query("KILL app").await.unwrap();
    let error = client.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        error.is_closed() || error.as_db_error().is_none(),
        "{error}"
    );
    until_equal(
        "the killed client's server connection is closed",
        WAIT,
        0,
        async || pg.backends(APP_DB, MD5_USER.name).await,
    )
    .await;
    assert!(
        rows(&console, "SHOW SERVERS")
            .await
            .iter()
            .all(|s| s["remote_pid"] != pid.to_string())
    );

    let newcomer = tokio::spawn({
        let proxy = Arc::clone(&proxy);
        async move { scalar(&app_client(&proxy).await, "SELECT 'back'").await }
    });
    until_equal(
        "a new client waits until RESUME",
        WAIT,
        owned(&["1"]),
        async || pool_counts(&console, &["cl_waiting"]).await,
    )
    .await;
    console.simple_query("RESUME").await.unwrap();
    assert_eq!(newcomer.await.unwrap(), "back");
}

#[tokio::test]
async fn non_admin_users_are_refused_and_unknown_commands_are_errors() {
    let pg = PgServer::start();
    let proxy = proxy(&pg, "");
    let refused = proxy
        .try_connect(MD5_USER.name, MD5_USER.password, ADMIN_DB)
        .await
        .map(drop)
        .expect_err("md5_user is not an admin user");
    assert_eq!(sqlstate(&refused), "28000");
    let message = refused.as_db_error().unwrap().message().to_owned();
    assert!(
        message.contains("not in [general] admin_users"),
        "{message}"
    );
    let wrong = proxy
        .try_connect(PLAIN_USER.name, "wrong", ADMIN_DB)
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&wrong), "28P01");

    let console = admin(&proxy).await;
    let error = console.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&error), "42601");
    assert_eq!(
        error.as_db_error().unwrap().message(),
        "unknown command \"SELECT 1\"; SHOW HELP lists the commands"
    );
    let error = console.simple_query("PAUSE nosuchdb").await.unwrap_err();
    assert_eq!(sqlstate(&error), "3D000");
    assert_eq!(
        rows(&console, "SHOW VERSION").await[0]["version"],
        format!("churnstile {}", env!("CARGO_PKG_VERSION"))
    );
    let error = console.query("SHOW POOLS", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "extended protocol is refused");
    assert_eq!(
        rows(&console, "SHOW HELP").await.len(),
        17,
        "the session goes on"
    );
}

#[tokio::test]
async fn reload_applies_pool_sizes_and_refuses_a_broken_file() {
    let pg = PgServer::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("churnstile.toml");
    let write = |extra: &str| {
        let config = pg_proxy_config(&pg, &format!("{ADMIN_CONFIG}{extra}"))
            .replace("{port}", &port.to_string())
            .replace("{socket_dir}", "");
        std::fs::write(&path, config).unwrap();
    };
    write("[pool]\ndefault_pool_size = 2\n");
    let proxy = Proxy::start_args(&["--config", path.to_str().unwrap()], port);
    let console = admin(&proxy).await;
    let size = async || {
        let databases = rows(&console, "SHOW DATABASES").await;
        databases[0]["pool_size"].clone()
    };
    assert_eq!(size().await, "2");

    write("[pool]\ndefault_pool_size = 7\n");
    console.simple_query("RELOAD").await.unwrap();
    assert_eq!(size().await, "7");
    let config = rows(&console, "SHOW CONFIG").await;
    let setting = config
        .iter()
        .find(|row| row["key"] == "default_pool_size")
        .unwrap();
    assert_eq!(
        (
            setting["value"].as_str(),
            setting["default"].as_str(),
            setting["changeable"].as_str()
        ),
        ("7", "20", "yes")
    );

    std::fs::write(&path, "[pool]\ndefault_pool_size = 0\n").unwrap();
    let error = console.simple_query("RELOAD").await.unwrap_err();
    assert_eq!(sqlstate(&error), "F0000");
    assert!(
        error
            .as_db_error()
            .unwrap()
            .message()
            .contains("default_pool_size"),
        "{error}"
    );
    assert_eq!(size().await, "7", "a broken file changes nothing");
    let client = app_client(&proxy).await;
    assert_eq!(scalar(&client, "SELECT 1").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_wait_for_clients_exits_once_every_client_has_left() {
    use support::shutdown::{PROMPTLY, wait_exit, wait_refused};

    let pg = PgServer::start();
    let mut proxy = proxy(&pg, "");
    let console = admin(&proxy).await;
    let client = app_client(&proxy).await;

    console
        .simple_query("SHUTDOWN WAIT_FOR_CLIENTS")
        .await
        .unwrap();
    wait_refused(proxy.port()).await;
    assert_eq!(scalar(&client, "SELECT 'still here'").await, "still here");
    assert_eq!(wait_exit(&mut proxy, Duration::ZERO), None);

    drop(client);
    drop(console);
    assert_eq!(
        wait_exit(&mut proxy, PROMPTLY),
        Some(0),
        "stderr:\n{}",
        proxy.stderr()
    );
}

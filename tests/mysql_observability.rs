//! What operators see of MySQL pools, against a real MariaDB: in the admin
//! console SHOW POOLS, SHOW CLIENTS, SHOW SERVERS, SHOW STATS, SHOW CHURN
//! and SHOW DATABASES list them,
//! PAUSE waits for their clients to give connections back and holds new
//! queries until RESUME, KILL disconnects their clients; the metrics
//! endpoint counts their logins, upstream connections and checkouts.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use support::admin_console::{ADMIN_DB, rows};
use support::metrics_endpoint::{mysql_pool_labels, scrape_until, value};
use support::mysql_client::{change_user, connect, query_drop, scalar};
use support::wait::until_equal;
use support::{
    APP_DB, MYSQL_APP_USER, MYSQL_OTHER_USER, MariaDbServer, Proxy, free_port,
    mysql_proxy_config_with,
};

const SETTLE: Duration = Duration::from_secs(10);

fn proxy(maria: &MariaDbServer, pool_size: usize) -> Proxy {
    // The other user administers; the application user's pool is watched.
    let admins = format!("[general]\nadmin_users = [\"{}\"]\n", MYSQL_OTHER_USER.name);
    Proxy::start(&mysql_proxy_config_with(
        maria,
        "transaction",
        pool_size,
        &admins,
    ))
}

async fn admin(proxy: &Proxy) -> tokio_postgres::Client {
    proxy
        .connect(MYSQL_OTHER_USER.name, MYSQL_OTHER_USER.password, ADMIN_DB)
        .await
}

/// The row of `sql` whose `column` is `value`.
async fn row_where(
    admin: &tokio_postgres::Client,
    sql: &str,
    column: &str,
    value: &str,
) -> HashMap<String, String> {
    rows(admin, sql)
        .await
        .into_iter()
        .find(|row| row[column] == value)
        .unwrap_or_else(|| panic!("{sql} has no row with {column} = {value}"))
}

/// `columns` of the app/appuser SHOW POOLS row.
async fn pool(admin: &tokio_postgres::Client, columns: &[&str]) -> Vec<String> {
    let row = rows(admin, "SHOW POOLS")
        .await
        .into_iter()
        .find(|row| row["database"] == APP_DB && row["user"] == MYSQL_APP_USER.name)
        .expect("SHOW POOLS lists app/appuser");
    columns.iter().map(|column| row[*column].clone()).collect()
}

fn owned(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

#[tokio::test]
async fn show_commands_count_mysql_pools_clients_and_upstream_connections() {
    let maria = MariaDbServer::start();
    let proxy = proxy(&maria, 2);
    let admin = admin(&proxy).await;

    let mut in_transaction = connect(&proxy, MYSQL_APP_USER).await;
    query_drop(&mut in_transaction, "BEGIN").await;
    assert_eq!(scalar(&mut in_transaction, "SELECT 1").await, "1");
    let mut idle = connect(&proxy, MYSQL_APP_USER).await;
    assert_eq!(scalar(&mut idle, "SELECT 2").await, "2");

    // One connection is held by the open transaction, the other is kept
    // between transactions by its client (nobody waits for it): both lent.
    assert_eq!(
        pool(
            &admin,
            &[
                "cl_active",
                "cl_waiting",
                "sv_active",
                "sv_idle",
                "pool_mode"
            ]
        )
        .await,
        owned(&["2", "0", "2", "0", "transaction"])
    );
    let churn = row_where(&admin, "SHOW CHURN", "user", MYSQL_APP_USER.name).await;
    assert_eq!(churn["database"], APP_DB);
    assert_eq!(churn["client_connects"], "2");
    assert_eq!(churn["upstream_connects"], "2");
    let stats = row_where(&admin, "SHOW STATS", "database", APP_DB).await;
    assert_eq!(stats["total_client_logins"], "2");
    assert_eq!(stats["total_server_connections"], "2");
    let mut states: Vec<(String, String)> = rows(&admin, "SHOW CLIENTS")
        .await
        .into_iter()
        .filter(|row| row["database"] == APP_DB)
        .map(|row| (row["user"].clone(), row["state"].clone()))
        .collect();
    states.sort();
    let user = MYSQL_APP_USER.name.to_owned();
    assert_eq!(
        states,
        [
            (user.clone(), "active".to_owned()),
            (user, "idle".to_owned())
        ]
    );
    let servers: Vec<_> = rows(&admin, "SHOW SERVERS")
        .await
        .into_iter()
        .filter(|row| row["database"] == APP_DB)
        .collect();
    assert_eq!(servers.len(), 2, "{servers:?}");
    let databases = row_where(&admin, "SHOW DATABASES", "name", APP_DB).await;
    assert_eq!(databases["current_connections"], "2");
    assert_eq!(databases["paused"], "0");

    drop(idle);
    query_drop(&mut in_transaction, "COMMIT").await;
    until_equal(
        "clients counted after one left",
        SETTLE,
        owned(&["1", "1", "1"]),
        async || pool(&admin, &["cl_active", "sv_active", "sv_idle"]).await,
    )
    .await;
}

#[tokio::test]
async fn pause_drains_a_mysql_pool_and_resume_lets_its_waiting_client_go_on() {
    let maria = MariaDbServer::start();
    let proxy = proxy(&maria, 2);
    let admin = admin(&proxy).await;
    let watcher = self::admin(&proxy).await;

    let mut holder = connect(&proxy, MYSQL_APP_USER).await;
    query_drop(&mut holder, "BEGIN").await;
    assert_eq!(scalar(&mut holder, "SELECT 1").await, "1");
    let pause = tokio::spawn(async move {
        admin
            .simple_query(&format!("PAUSE {APP_DB}"))
            .await
            .map(|_| admin)
    });
    until_equal("database paused", SETTLE, "1".to_owned(), async || {
        row_where(&watcher, "SHOW DATABASES", "name", APP_DB).await["paused"].clone()
    })
    .await;
    assert!(
        !pause.is_finished(),
        "PAUSE returned while a transaction held a connection"
    );

    // Committing gives the connection back; paused, the pool closes it.
    query_drop(&mut holder, "COMMIT").await;
    let admin = tokio::time::timeout(SETTLE, pause)
        .await
        .expect("PAUSE finished once the transaction ended")
        .unwrap()
        .expect("PAUSE succeeded");
    assert_eq!(
        pool(&watcher, &["sv_active", "sv_idle", "sv_login"]).await,
        owned(&["0", "0", "0"])
    );

    let waiting = tokio::spawn(async move {
        let answer = scalar(&mut holder, "SELECT 42").await;
        (holder, answer)
    });
    until_equal(
        "client waiting while paused",
        SETTLE,
        owned(&["1"]),
        async || pool(&watcher, &["cl_waiting"]).await,
    )
    .await;
    admin
        .simple_query(&format!("RESUME {APP_DB}"))
        .await
        .expect("RESUME succeeded");
    let (_holder, answer) = tokio::time::timeout(SETTLE, waiting)
        .await
        .expect("the waiting query ran after RESUME")
        .unwrap();
    assert_eq!(answer, "42");
}

#[tokio::test]
async fn kill_disconnects_a_databases_mysql_clients() {
    let maria = MariaDbServer::start();
    let proxy = proxy(&maria, 2);
    let admin = admin(&proxy).await;

    let mut victim: Conn = connect(&proxy, MYSQL_APP_USER).await;
    assert_eq!(scalar(&mut victim, "SELECT 1").await, "1");
    admin
        .simple_query(&format!("KILL {APP_DB}"))
        .await
        .expect("KILL succeeded");
    let after = victim.query_drop("SELECT 1").await;
    assert!(after.is_err(), "a killed client's next query failed");
    until_equal("no client left", SETTLE, owned(&["0"]), async || {
        pool(&admin, &["cl_active"]).await
    })
    .await;
}

#[tokio::test]
async fn metrics_count_mysql_logins_upstream_connections_and_checkouts() {
    let maria = MariaDbServer::start();
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let proxy = Proxy::start(&mysql_proxy_config_with(
        &maria,
        "transaction",
        2,
        &format!("[general]\nmetrics_listen = \"{metrics}\"\n"),
    ));
    for cycle in 0..5 {
        let mut conn = connect(&proxy, MYSQL_APP_USER).await;
        assert_eq!(
            scalar(&mut conn, &format!("SELECT {cycle}")).await,
            cycle.to_string()
        );
        conn.disconnect().await.unwrap();
    }
    // A sixth client holds the connection in a transaction.
    let mut staying = connect(&proxy, MYSQL_APP_USER).await;
    query_drop(&mut staying, "BEGIN").await;
    assert_eq!(scalar(&mut staying, "SELECT 5").await, "5");
    let labels = mysql_pool_labels(&[]);
    let text = scrape_until(
        metrics,
        "churnstile_client_logins_total",
        &labels,
        6.0,
        SETTLE,
    )
    .await;
    let with = |key, label_value| mysql_pool_labels(&[(key, label_value)]);
    let sample = |name: &str, labels: &[(&str, &str)]| value(&text, name, labels);
    // One client at a time: the first connection served all six.
    assert_eq!(
        sample(
            "churnstile_upstream_connections_opened_total",
            &with("result", "ok")
        ),
        1.0
    );
    assert_eq!(sample("churnstile_pool_checkouts_total", &labels), 6.0);
    assert_eq!(sample("churnstile_pool_reuse_ratio", &labels), 6.0);
    assert_eq!(
        sample("churnstile_upstream_connections", &with("state", "active")),
        1.0
    );
    assert_eq!(
        sample("churnstile_pool_clients", &with("state", "active")),
        1.0
    );
    assert_eq!(sample("churnstile_pool_paused", &labels), 0.0);
    // The five that left are in the session-length histogram, as MySQL's.
    scrape_until(
        metrics,
        "churnstile_client_session_seconds_count",
        &labels,
        5.0,
        SETTLE,
    )
    .await;
    query_drop(&mut staying, "COMMIT").await;
}

#[tokio::test]
async fn after_com_change_user_the_console_lists_and_kills_the_new_login() {
    let maria = MariaDbServer::start();
    let proxy = proxy(&maria, 2);
    let admin = admin(&proxy).await;

    let mut conn = connect(&proxy, MYSQL_APP_USER).await;
    change_user(&mut conn, MYSQL_OTHER_USER.name, MYSQL_OTHER_USER.password)
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", proxy.stderr()));
    assert_eq!(scalar(&mut conn, "SELECT 7").await, "7");
    let users: Vec<String> = rows(&admin, "SHOW CLIENTS")
        .await
        .into_iter()
        .filter(|row| row["database"] == APP_DB)
        .map(|row| row["user"].clone())
        .collect();
    assert_eq!(users, [MYSQL_OTHER_USER.name]);

    admin
        .simple_query(&format!("KILL {APP_DB}"))
        .await
        .expect("KILL succeeded");
    assert!(
        conn.query_drop("SELECT 1").await.is_err(),
        "the re-logged-in client survived KILL"
    );
}

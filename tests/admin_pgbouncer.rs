//! The admin console as PgBouncer's tools meet it: the database name
//! `pgbouncer` opens it, `stats_users` may SHOW but a PAUSE from one is
//! refused with 42501, SHOW POOLS / STATE / LISTS / FDS / DNS_HOSTS / DNS_ZONES
//! answer with PgBouncer 1.25's columns in its order, and SUSPEND is a clear not-supported error.

mod support;

use support::admin_console::rows;
use support::pg_client::sqlstate;
use support::{MD5_USER, PLAIN_USER, PgServer, Proxy, pg_proxy_config};
use tokio_postgres::{Client, SimpleQueryMessage};

/// PgBouncer's name for its console.
const PGBOUNCER_DB: &str = "pgbouncer";

/// `plain_user` administers; `md5_user` may only look.
fn proxy(pg: &PgServer) -> Proxy {
    Proxy::start(&pg_proxy_config(
        pg,
        "[general]\nadmin_users = [\"plain_user\"]\nstats_users = [\"md5_user\"]\n",
    ))
}

/// The column names of `sql`'s result, even when it has no rows.
async fn columns(client: &Client, sql: &str) -> Vec<String> {
    let messages = client.simple_query(sql).await.unwrap();
    messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::RowDescription(columns) => {
                Some(columns.iter().map(|c| c.name().to_owned()).collect())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no RowDescription"))
}

#[tokio::test]
async fn the_pgbouncer_database_opens_the_console_with_pgbouncer_tables() {
    let pg = PgServer::start();
    let proxy = proxy(&pg);
    let console = proxy
        .connect(PLAIN_USER.name, PLAIN_USER.password, PGBOUNCER_DB)
        .await;
    let state: Vec<(String, String)> = rows(&console, "SHOW STATE")
        .await
        .into_iter()
        .map(|row| (row["key"].clone(), row["value"].clone()))
        .collect();
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        state,
        pairs(&[("active", "yes"), ("paused", "no"), ("suspended", "no")])
    );
    console.simple_query("PAUSE").await.unwrap();
    let state = rows(&console, "SHOW STATE").await;
    assert_eq!(
        (state[0]["value"].as_str(), state[1]["value"].as_str()),
        ("no", "yes")
    );
    console.simple_query("RESUME").await.unwrap();

    assert_eq!(
        columns(&console, "SHOW POOLS").await,
        [
            "database",
            "user",
            "cl_active",
            "cl_waiting",
            "cl_active_cancel_req",
            "cl_waiting_cancel_req",
            "sv_active",
            "sv_active_cancel",
            "sv_being_canceled",
            "sv_idle",
            "sv_used",
            "sv_tested",
            "sv_login",
            "maxwait",
            "maxwait_us",
            "pool_mode",
            "load_balance_hosts"
        ]
    );
    assert_eq!(
        columns(&console, "SHOW FDS").await,
        [
            "fd",
            "task",
            "user",
            "database",
            "addr",
            "port",
            "cancel",
            "link",
            "client_encoding",
            "std_strings",
            "datestyle",
            "timezone",
            "password",
            "scram_client_key",
            "scram_server_key"
        ]
    );
    let lists: Vec<String> = rows(&console, "SHOW LISTS")
        .await
        .iter()
        .map(|row| format!("{}={}", row["list"], row["items"]))
        .collect();
    assert_eq!(lists[..3], ["databases=1", "users=3", "pools=3"]);
    assert_eq!(lists.len(), 12);
    assert_eq!(
        columns(&console, "SHOW DNS_HOSTS").await,
        ["hostname", "ttl", "addrs"]
    );
    assert_eq!(
        columns(&console, "SHOW DNS_ZONES").await,
        ["zonename", "serial", "count"]
    );
    assert!(rows(&console, "SHOW FDS").await.is_empty());

    let error = console.simple_query("SUSPEND").await.unwrap_err();
    assert_eq!(sqlstate(&error), "0A000");
    assert!(
        error
            .as_db_error()
            .unwrap()
            .message()
            .starts_with("SUSPEND is not supported")
    );
}

#[tokio::test]
async fn stats_users_may_show_but_not_pause() {
    let pg = PgServer::start();
    let proxy = proxy(&pg);
    let stats = proxy
        .connect(MD5_USER.name, MD5_USER.password, PGBOUNCER_DB)
        .await;
    let pools: Vec<String> = rows(&stats, "SHOW POOLS")
        .await
        .iter()
        .map(|row| format!("{}/{}", row["database"], row["user"]))
        .collect();
    assert_eq!(pools, ["app/md5_user", "app/plain_user", "app/scram_user"]);
    assert_eq!(rows(&stats, "SHOW VERSION").await.len(), 1);
    for command in ["PAUSE", "RESUME app", "RELOAD", "KILL app", "SHUTDOWN"] {
        let error = stats.simple_query(command).await.unwrap_err();
        assert_eq!(sqlstate(&error), "42501", "{command}");
        assert_eq!(
            error.as_db_error().unwrap().message(),
            "user \"md5_user\" may only SHOW (in [general] stats_users, not admin_users)"
        );
    }
    let state = rows(&stats, "SHOW STATE").await;
    assert_eq!(
        state[1]["value"], "no",
        "the stats user's PAUSE changed nothing"
    );
}

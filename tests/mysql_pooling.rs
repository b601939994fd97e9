//! MySQL session and transaction pooling with mysql_async against a real
//! MariaDB: session state reset between session-pooled clients, connection
//! churn kept within the pool, session state (variables, character set,
//! schema, LAST_INSERT_ID) following each transaction-pooled client to
//! whichever server connection it lands on and leaking to no other,
//! affected rows, multiple result sets, clients that vanish mid-transaction,
//! and pins (`pin_policy = "pin"` keeps the client on its server
//! connection, `"reject"` refuses with 1235).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use support::mysql_client::{
    connect, error_code, error_message, first_row, proxy_opts, query_drop, scalar,
    server_connection_id, try_connect,
};
use support::raw_mysql::{self, RawMySql};
use support::wait::{POLL_INTERVAL, until_equal};
use support::{
    APP_DB, MYSQL_APP_USER, MariaDbServer, NATIVE_USER, Proxy, mysql_proxy_config,
    mysql_proxy_config_with,
};

const USER: support::MySqlProxyUser = MYSQL_APP_USER;

/// MariaDB with `app.items` (an AUTO_INCREMENT table), the database
/// `other` with `other.marker`, and a procedure whose temporary table
/// churnstile cannot see being made.
fn server() -> MariaDbServer {
    let maria = MariaDbServer::start();
    maria.query(&format!(
        "CREATE TABLE {APP_DB}.items (id INT AUTO_INCREMENT PRIMARY KEY, owner INT NOT NULL, \
             touched INT NOT NULL DEFAULT 0) ENGINE=InnoDB; \
         CREATE DATABASE other; \
         CREATE TABLE other.marker (name VARCHAR(20)); \
         INSERT INTO other.marker VALUES ('other'); \
         GRANT ALL ON other.* TO '{user}'@'%'; \
         CREATE PROCEDURE {APP_DB}.make_temporary_table() \
             CREATE TEMPORARY TABLE made_in_procedure (a INT);",
        user = NATIVE_USER.name,
    ));
    maria
}

#[tokio::test]
async fn session_pooling_resets_variables_and_temporary_tables_between_clients() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "session", 1));
    let before = maria.connections_total();

    let mut first = connect(&proxy, USER).await;
    let server_id = server_connection_id(&mut first).await;
    let default_time_zone = scalar(&mut first, "SELECT @@time_zone").await;
    query_drop(&mut first, "SET @x = 5, time_zone = '+05:00'").await;
    query_drop(&mut first, "CREATE TEMPORARY TABLE scratch (a INT)").await;
    query_drop(&mut first, "INSERT INTO scratch VALUES (1)").await;
    assert_eq!(scalar(&mut first, "SELECT @x").await, "5");
    first.disconnect().await.unwrap();

    let mut second = connect(&proxy, USER).await;
    assert_eq!(
        server_connection_id(&mut second).await,
        server_id,
        "a pool of one reuses its connection"
    );
    assert_eq!(scalar(&mut second, "SELECT @x").await, "NULL");
    assert_eq!(
        scalar(&mut second, "SELECT @@time_zone").await,
        default_time_zone
    );
    let error = second
        .query_drop("SELECT * FROM scratch")
        .await
        .expect_err("the first client's temporary table is visible");
    assert_eq!(error_code(&error), 1146, "{error}");
    assert_eq!(maria.connections_total(), before + 1 + 1);
}

#[tokio::test]
async fn two_thousand_connect_query_close_cycles_open_at_most_pool_size_upstream_connections() {
    const CYCLES: usize = 2_000;
    const POOL_SIZE: u64 = 3;
    const TIME_LIMIT: Duration = Duration::from_secs(240);
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "session", POOL_SIZE as usize));
    let before = maria.connections_total();

    let started = Instant::now();
    for cycle in 0..CYCLES {
        let mut conn = connect(&proxy, USER).await;
        let row: Option<(u64,)> = conn
            .exec_first("SELECT ? + 1", (cycle as u64,))
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        assert_eq!(row, Some((cycle as u64 + 1,)), "cycle {cycle}");
        conn.disconnect().await.unwrap();
        assert!(
            started.elapsed() < TIME_LIMIT,
            "only {cycle} cycles within {TIME_LIMIT:?}"
        );
    }
    let elapsed = started.elapsed();
    // The query asking counts itself.
    let opened = maria.connections_total() - before - 1;
    println!(
        "{CYCLES} MySQL connect/query/close cycles took {elapsed:?} ({:?} per cycle); \
         upstream connections opened: {opened}",
        elapsed / CYCLES as u32
    );
    assert!(
        (1..=POOL_SIZE).contains(&opened),
        "{CYCLES} clients opened {opened} upstream connections with a pool of {POOL_SIZE}"
    );
}

/// What one client has set, as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    time_zone: String,
    sql_mode: String,
    character_set_client: String,
    database: String,
}

async fn settings(conn: &mut Conn) -> Settings {
    let row = first_row(
        conn,
        "SELECT @@time_zone, @@sql_mode, @@character_set_client, DATABASE()",
    )
    .await;
    Settings {
        time_zone: row[0].clone(),
        sql_mode: row[1].clone(),
        character_set_client: row[2].clone(),
        database: row[3].clone(),
    }
}

#[tokio::test]
async fn transaction_pooling_moves_each_clients_session_state_onto_the_shared_connection() {
    const ROUNDS: usize = 10;
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let before = maria.connections_total();

    let mut latin = connect(&proxy, USER).await;
    query_drop(
        &mut latin,
        "SET time_zone = '+01:00', sql_mode = 'ANSI_QUOTES'",
    )
    .await;
    query_drop(&mut latin, "SET NAMES latin1").await;
    query_drop(&mut latin, "USE other").await;
    let latin_expected = Settings {
        time_zone: "+01:00".into(),
        sql_mode: "ANSI_QUOTES".into(),
        character_set_client: "latin1".into(),
        database: "other".into(),
    };

    let mut plain = connect(&proxy, USER).await;
    query_drop(
        &mut plain,
        "SET time_zone = '-03:00', sql_mode = 'NO_ZERO_DATE'",
    )
    .await;
    let plain_expected = Settings {
        time_zone: "-03:00".into(),
        sql_mode: "NO_ZERO_DATE".into(),
        character_set_client: "utf8mb4".into(),
        database: APP_DB.into(),
    };

    let shared = server_connection_id(&mut latin).await;
    for round in 0..ROUNDS {
        assert_eq!(settings(&mut latin).await, latin_expected, "round {round}");
        assert_eq!(settings(&mut plain).await, plain_expected, "round {round}");
        // Each sees its own schema's tables, and its character set at work.
        assert_eq!(scalar(&mut latin, "SELECT name FROM marker").await, "other");
        assert_eq!(
            scalar(&mut plain, "SELECT COUNT(*) FROM items").await,
            "0",
            "round {round}"
        );
        assert_eq!(
            scalar(&mut latin, "SELECT CHARSET('x')").await,
            "latin1",
            "round {round}"
        );
        assert_eq!(scalar(&mut plain, "SELECT CHARSET('x')").await, "utf8mb4");
    }
    assert_eq!(server_connection_id(&mut plain).await, shared);
    assert_eq!(maria.connections_total(), before + 1 + 1);
}

#[tokio::test]
async fn the_handshake_collation_stays_the_clients_on_a_shared_connection() {
    /// utf8mb4_unicode_ci and latin1_german2_ci: not their character
    /// sets' default collations.
    const COLLATIONS: [(u8, &str); 2] = [
        (224, "utf8mb4 utf8mb4_unicode_ci"),
        (31, "latin1 latin1_german2_ci"),
    ];
    const PROBE: &str = "SELECT CONCAT_WS(' ', @@character_set_client, @@collation_connection)";
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut clients = Vec::new();
    for (id, expected) in COLLATIONS {
        let client = RawMySql::login_with_collation(proxy.mysql_port(), USER, id).await;
        clients.push((client, expected));
    }
    let mut names = connect(&proxy, USER).await;
    query_drop(&mut names, "SET NAMES cp1250").await;
    for round in 0..3 {
        for (client, expected) in &mut clients {
            assert_eq!(client.scalar(PROBE).await, *expected, "round {round}");
        }
        assert_eq!(scalar(&mut names, PROBE).await, "cp1250 cp1250_general_ci");
    }
}

/// Session state of twelve kinds, as one row of text.
const STATE_PROBE: &str = "SELECT @@time_zone, @@sql_mode, @@character_set_client, \
     @@character_set_results, @@collation_connection, DATABASE(), @@lc_time_names, \
     @@div_precision_increment, @@sql_select_limit, @@group_concat_max_len, @@tx_isolation, \
     LAST_INSERT_ID(), UNIX_TIMESTAMP() = 1000000000";

/// Statements changing every kind of state `STATE_PROBE` reads but the
/// clock, all of which moves with the client.
const MOVABLE_POLLUTION: &[&str] = &[
    "SET time_zone = '+09:30', sql_mode = 'PIPES_AS_CONCAT', lc_time_names = 'de_DE'",
    "SET NAMES latin1 COLLATE latin1_german1_ci",
    "SET div_precision_increment = 9, sql_select_limit = 7, group_concat_max_len = 777",
    "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "INSERT INTO app.items (owner) VALUES (-1)",
    "USE other",
];

/// A frozen clock, which cannot move: its client is pinned, and its
/// server connection reset when it leaves.
const PINNING_POLLUTION: &str = "SET timestamp = 1000000000";

#[tokio::test]
async fn state_one_client_sets_leaks_to_none_of_the_twenty_clients_after_it() {
    const FOLLOWERS: usize = 20;
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));

    let mut fresh = connect(&proxy, USER).await;
    let defaults = first_row(&mut fresh, STATE_PROBE).await;
    fresh.disconnect().await.unwrap();

    let mut polluter = connect(&proxy, USER).await;
    for sql in MOVABLE_POLLUTION {
        query_drop(&mut polluter, sql).await;
    }
    let polluted = first_row(&mut polluter, STATE_PROBE).await;
    let (clock, movable) = polluted.split_last().expect("a probe row");
    for (kind, (default, set)) in defaults.iter().zip(movable).enumerate() {
        assert_ne!(default, set, "state {kind} of {STATE_PROBE} did not change");
    }
    assert_eq!(clock, "0");

    for follower in 0..FOLLOWERS {
        let mut conn = connect(&proxy, USER).await;
        assert_eq!(
            first_row(&mut conn, STATE_PROBE).await,
            defaults,
            "follower {follower} sees state another client set"
        );
        // The polluter keeps its state on the same shared connection.
        assert_eq!(
            first_row(&mut polluter, STATE_PROBE).await,
            polluted,
            "after follower {follower}"
        );
        // Leaving polluters of their own: state that moves stays behind on
        // the connection, the clock goes with the reset.
        match follower % 4 {
            0 => {
                for sql in MOVABLE_POLLUTION {
                    query_drop(&mut conn, sql).await;
                }
            }
            1 => {
                for sql in MOVABLE_POLLUTION.iter().chain([&PINNING_POLLUTION]) {
                    query_drop(&mut conn, sql).await;
                }
                let row = first_row(&mut conn, STATE_PROBE).await;
                assert_eq!(row.last().map(String::as_str), Some("1"), "the clock froze");
            }
            _ => {}
        }
        conn.disconnect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_insert_id_is_each_concurrent_clients_own() {
    const CLIENTS: usize = 20;
    const ROUNDS: usize = 5;
    let maria = server();
    let proxy = Arc::new(Proxy::start(&mysql_proxy_config(&maria, "transaction", 3)));
    let before = maria.connections_total();

    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let proxy = Arc::clone(&proxy);
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(&proxy, USER).await;
            let mut ids = Vec::new();
            for round in 0..ROUNDS {
                let what = format!("client {client} round {round}");
                query_drop(
                    &mut conn,
                    &format!("INSERT INTO items (owner) VALUES ({client})"),
                )
                .await;
                assert_eq!(conn.affected_rows(), 1, "{what}");
                let inserted = conn.last_insert_id().expect("an id for the insert");
                let reported: u64 = scalar(&mut conn, "SELECT LAST_INSERT_ID()")
                    .await
                    .parse()
                    .unwrap();
                assert_eq!(reported, inserted, "{what}: LAST_INSERT_ID()");
                let owner: Option<u64> = conn
                    .exec_first("SELECT owner FROM items WHERE id = ?", (reported,))
                    .await
                    .unwrap();
                assert_eq!(owner, Some(client as u64), "{what}: the row of that id");
                ids.push(inserted);
            }
            query_drop(
                &mut conn,
                &format!("UPDATE items SET touched = touched + 1 WHERE owner = {client}"),
            )
            .await;
            assert_eq!(conn.affected_rows(), ROUNDS as u64, "client {client}");
            conn.disconnect().await.unwrap();
            ids
        }));
    }
    let mut all_ids = Vec::new();
    for task in tasks {
        let ids = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("clients finish within 120 s")
            .expect("client task succeeded");
        all_ids.extend(ids);
    }
    all_ids.sort_unstable();
    all_ids.dedup();
    assert_eq!(all_ids.len(), CLIENTS * ROUNDS, "ids handed out twice");
    let opened = maria.connections_total() - before - 1;
    assert!(
        (1..=3).contains(&opened),
        "opened {opened} with a pool of 3"
    );
}

#[tokio::test]
async fn set_last_insert_id_moves_with_its_client_and_only_with_it() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut setter = connect(&proxy, USER).await;
    let mut other = connect(&proxy, USER).await;
    query_drop(&mut setter, "SET last_insert_id = 99").await;
    for round in 0..3 {
        assert_eq!(
            scalar(&mut other, "SELECT LAST_INSERT_ID()").await,
            "0",
            "round {round}: another client's LAST_INSERT_ID"
        );
        assert_eq!(
            scalar(&mut setter, "SELECT LAST_INSERT_ID()").await,
            "99",
            "round {round}"
        );
    }
}

#[tokio::test]
async fn last_insert_id_with_an_argument_moves_with_its_client_and_only_with_it() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut setter = connect(&proxy, USER).await;
    let mut other = connect(&proxy, USER).await;
    // The sequence idiom's SELECT form: the OK packet carries no insert id.
    assert_eq!(scalar(&mut setter, "SELECT LAST_INSERT_ID(77)").await, "77");
    query_drop(&mut other, "DO LAST_INSERT_ID(5)").await;
    for round in 0..3 {
        assert_eq!(
            scalar(&mut setter, "SELECT LAST_INSERT_ID()").await,
            "77",
            "round {round}"
        );
        assert_eq!(
            scalar(&mut other, "SELECT LAST_INSERT_ID()").await,
            "5",
            "round {round}"
        );
    }
}

#[tokio::test]
async fn affected_rows_count_changed_rows_or_with_client_found_rows_matched_ones() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    maria.query("INSERT INTO app.items (owner) VALUES (1), (1), (1), (2)");

    let mut changed = connect(&proxy, USER).await;
    let mut found = try_connect(proxy_opts(&proxy, USER).client_found_rows(true))
        .await
        .unwrap();
    for _ in 0..3 {
        query_drop(&mut changed, "UPDATE items SET owner = 1 WHERE owner = 1").await;
        assert_eq!(changed.affected_rows(), 0, "no row changed");
        query_drop(&mut found, "UPDATE items SET owner = 1 WHERE owner = 1").await;
        assert_eq!(found.affected_rows(), 3, "three rows matched (FOUND_ROWS)");
        query_drop(&mut changed, "DELETE FROM items WHERE owner = 99").await;
        assert_eq!(changed.affected_rows(), 0);
        query_drop(&mut changed, "UPDATE items SET touched = 1 WHERE owner = 2").await;
        assert_eq!(changed.affected_rows(), 1);
        query_drop(&mut changed, "UPDATE items SET touched = 0 WHERE owner = 2").await;
    }
}

#[tokio::test]
async fn a_multi_statement_query_returns_every_result_set() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut conn = connect(&proxy, USER).await;

    for _ in 0..3 {
        let mut result = conn.query_iter("SELECT 1; SELECT 2, 3").await.unwrap();
        let first: Vec<(i64,)> = result.collect().await.unwrap();
        let second: Vec<(i64, i64)> = result.collect().await.unwrap();
        assert!(result.is_empty(), "a third result set");
        drop(result);
        assert_eq!((first, second), (vec![(1,)], vec![(2, 3)]));
    }

    let mut result = conn
        .query_iter("INSERT INTO items (owner) VALUES (7); SELECT owner FROM items")
        .await
        .unwrap();
    assert_eq!(result.affected_rows(), 1);
    result.collect::<mysql_async::Row>().await.unwrap();
    let owners: Vec<(i64,)> = result.collect().await.unwrap();
    drop(result);
    assert_eq!(owners, [(7,)]);

    // An error in the middle ends the response; the client goes on.
    let mut result = conn
        .query_iter("SELECT 1; SELECT * FROM missing_table; SELECT 3")
        .await
        .unwrap();
    let first: Vec<(i64,)> = result.collect().await.unwrap();
    assert_eq!(first, [(1,)]);
    let error = result
        .collect::<mysql_async::Row>()
        .await
        .expect_err("the missing table");
    assert_eq!(error_code(&error), 1146, "{error}");
    drop(result);
    assert_eq!(scalar(&mut conn, "SELECT 'after'").await, "after");
}

#[tokio::test]
async fn a_client_gone_mid_transaction_is_rolled_back_and_its_connection_reused() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut watcher = connect(&proxy, USER).await;
    let server_id = server_connection_id(&mut watcher).await;
    let before = maria.connections_total();

    // Closed without COM_QUIT, as when a client process dies.
    let mut vanishing = RawMySql::login(proxy.mysql_port(), USER).await;
    for sql in ["BEGIN", "INSERT INTO items (owner) VALUES (13)"] {
        let reply = vanishing.query_no_rows(sql).await;
        assert_eq!(
            reply[0],
            raw_mysql::OK,
            "{sql}: {}",
            raw_mysql::describe(&reply)
        );
    }
    drop(vanishing);

    // COM_QUIT in the middle of a transaction.
    let mut quitting = connect(&proxy, USER).await;
    query_drop(&mut quitting, "BEGIN").await;
    query_drop(&mut quitting, "INSERT INTO items (owner) VALUES (14)").await;
    quitting.disconnect().await.unwrap();

    assert_eq!(
        scalar(&mut watcher, "SELECT COUNT(*) FROM items").await,
        "0",
        "an abandoned transaction was committed"
    );
    assert_eq!(scalar(&mut watcher, "SELECT @@in_transaction").await, "0");
    assert_eq!(server_connection_id(&mut watcher).await, server_id);
    assert_eq!(
        maria.connections_total(),
        before + 1,
        "the server connection was replaced instead of reset"
    );
}

#[tokio::test]
async fn per_statement_settings_do_not_become_session_state() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut conn = connect(&proxy, USER).await;
    let mut other = connect(&proxy, USER).await;
    let defaults = first_row(&mut conn, "SELECT @@sql_select_limit, @@max_statement_time").await;

    let limited: Vec<(i64,)> = conn
        .query("SET STATEMENT sql_select_limit = 1, max_statement_time = 7 FOR SELECT 1 UNION ALL SELECT 2")
        .await
        .unwrap();
    assert_eq!(limited, [(1,)], "SET STATEMENT did not apply");
    for _ in 0..3 {
        let what = "SET STATEMENT's values after its statement";
        assert_eq!(scalar(&mut other, "SELECT 'elsewhere'").await, "elsewhere");
        assert_eq!(
            first_row(&mut conn, "SELECT @@sql_select_limit, @@max_statement_time").await,
            defaults,
            "{what}"
        );
    }
}

/// Runs `sql`, which must fail with `code` and a message containing
/// `message`; returns how long the failure took.
async fn refused_after(conn: &mut Conn, sql: &str, code: u16, message: &str) -> Duration {
    let started = Instant::now();
    let error = conn.query_drop(sql).await.expect_err(sql);
    let waited = started.elapsed();
    assert_eq!(error_code(&error), code, "{sql}: {error}");
    assert!(error_message(&error).contains(message), "{sql}: {error}");
    waited
}

#[tokio::test]
async fn a_client_waiting_longer_than_query_wait_timeout_gets_1040_and_goes_on() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config_with(
        &maria,
        "transaction",
        1,
        "[pool]\nquery_wait_timeout = 1\n",
    ));
    let mut holder = connect(&proxy, USER).await;
    query_drop(&mut holder, "BEGIN").await;
    let mut waiter = connect(&proxy, USER).await;

    let waited = refused_after(&mut waiter, "SELECT 1", 1040, "query_wait_timeout").await;
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "refused after {waited:?} with query_wait_timeout = 1"
    );

    query_drop(&mut holder, "COMMIT").await;
    assert_eq!(scalar(&mut waiter, "SELECT 'served'").await, "served");
}

#[tokio::test]
async fn server_connections_mariadb_closed_while_idle_are_replaced_unnoticed() {
    let maria = MariaDbServer::builder().option("--wait-timeout=1").start();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let mut conn = connect(&proxy, USER).await;
    let first = server_connection_id(&mut conn).await;
    until_equal(
        "MariaDB closes the idle pooled connection (wait_timeout = 1)",
        POLL_INTERVAL * 200,
        "0".to_owned(),
        async || {
            maria.query(&format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {first}"
            ))
        },
    )
    .await;
    for _ in 0..3 {
        assert_eq!(scalar(&mut conn, "SELECT 'fresh'").await, "fresh");
    }
    assert_ne!(server_connection_id(&mut conn).await, first);
}

#[tokio::test]
async fn while_mariadb_is_down_clients_get_1105_within_query_wait_timeout_and_go_on_after() {
    let mut maria = server();
    let proxy = Proxy::start(&mysql_proxy_config_with(
        &maria,
        "transaction",
        2,
        "[pool]\nquery_wait_timeout = 2\n",
    ));
    let mut before = connect(&proxy, USER).await;
    assert_eq!(scalar(&mut before, "SELECT 1").await, "1");

    maria.stop();
    // Logging in needs no server connection; the queries find none.
    let mut during = connect(&proxy, USER).await;
    for (name, client) in [("before", &mut before), ("during", &mut during)] {
        let waited = refused_after(client, "SELECT 2", 1105, "cannot reach").await;
        assert!(
            waited < Duration::from_secs(4),
            "{name}: refused after {waited:?} with query_wait_timeout = 2"
        );
    }

    maria.restart();
    for client in [&mut before, &mut during] {
        assert_eq!(scalar(client, "SELECT 'back'").await, "back");
    }
}

/// A statement that keeps its client on its server connection, the state
/// it leaves, and a query that shows that state is there.
struct Pin {
    statement: &'static str,
    check: &'static str,
    expected: &'static str,
    /// What the 1235 error under `pin_policy = "reject"` names.
    reason: &'static str,
}

const PINS: &[Pin] = &[
    Pin {
        statement: "SET @pinned = 41",
        check: "SELECT @pinned + 1",
        expected: "42",
        reason: "user variables",
    },
    Pin {
        statement: "CREATE TEMPORARY TABLE pinned_tmp (a INT)",
        check: "SELECT COUNT(*) FROM pinned_tmp",
        expected: "0",
        reason: "temporary tables",
    },
    Pin {
        statement: "SELECT GET_LOCK('pinned_lock', 0)",
        check: "SELECT IS_USED_LOCK('pinned_lock') = CONNECTION_ID()",
        expected: "1",
        reason: "GET_LOCK",
    },
    Pin {
        statement: "LOCK TABLES items READ",
        check: "SELECT COUNT(*) FROM items",
        expected: "3",
        reason: "LOCK TABLES",
    },
    Pin {
        statement: "SELECT SQL_CALC_FOUND_ROWS id FROM items LIMIT 1",
        check: "SELECT FOUND_ROWS()",
        expected: "3",
        reason: "SQL_CALC_FOUND_ROWS",
    },
    Pin {
        statement: "PREPARE pinned_stmt FROM 'SELECT 5'",
        check: "EXECUTE pinned_stmt",
        expected: "5",
        reason: "PREPARE",
    },
    Pin {
        statement: "HANDLER items OPEN",
        check: "HANDLER items READ `PRIMARY` FIRST",
        expected: "1",
        reason: "HANDLER",
    },
    Pin {
        statement: "SET autocommit = 0",
        check: "SELECT @@autocommit",
        expected: "0",
        reason: "autocommit = 0",
    },
    Pin {
        statement: "XA START 'pinned_xa'",
        check: "SELECT @@in_transaction",
        expected: "1",
        reason: "XA",
    },
];

#[tokio::test]
async fn each_pin_reason_keeps_the_client_on_its_server_connection() {
    let maria = server();
    maria.query("INSERT INTO app.items (owner) VALUES (1), (2), (3)");
    for pin in PINS {
        // A fresh pool of two per reason: the pinned client's connection
        // is its only one, which an unpinned client would be given back.
        let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
        let mut pinned = connect(&proxy, USER).await;
        let pinned_id = server_connection_id(&mut pinned).await;
        query_drop(&mut pinned, pin.statement).await;

        let mut other = connect(&proxy, USER).await;
        query_drop(&mut other, "BEGIN").await;
        let other_id = server_connection_id(&mut other).await;
        assert_ne!(
            other_id, pinned_id,
            "{}: another client got the pinned connection",
            pin.statement
        );
        // The check first: FOUND_ROWS() is about the statement before it.
        assert_eq!(
            scalar(&mut pinned, pin.check).await,
            pin.expected,
            "{}: {}",
            pin.statement,
            pin.check
        );
        assert_eq!(
            server_connection_id(&mut pinned).await,
            pinned_id,
            "{}",
            pin.statement
        );
        query_drop(&mut other, "COMMIT").await;
        // Gone before churnstile stops, which waits for open transactions.
        other.disconnect().await.unwrap();
        pinned.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn a_procedure_making_state_churnstile_cannot_name_pins_by_the_servers_report() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let mut pinned = connect(&proxy, USER).await;
    query_drop(&mut pinned, "CALL make_temporary_table()").await;
    let pinned_id = server_connection_id(&mut pinned).await;

    let mut other = connect(&proxy, USER).await;
    query_drop(&mut other, "BEGIN").await;
    assert_ne!(server_connection_id(&mut other).await, pinned_id);
    assert_eq!(
        scalar(&mut pinned, "SELECT COUNT(*) FROM made_in_procedure").await,
        "0"
    );
}

#[tokio::test]
async fn unlock_tables_and_autocommit_on_release_the_pin() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config_with(
        &maria,
        "transaction",
        1,
        "[pool]\nquery_wait_timeout = 5\n",
    ));
    let mut pinned = connect(&proxy, USER).await;
    let mut other = connect(&proxy, USER).await;
    for (pin, unpin) in [
        ("LOCK TABLES items WRITE", "UNLOCK TABLES"),
        ("SET autocommit = 0", "SET autocommit = 1"),
    ] {
        query_drop(&mut pinned, pin).await;
        query_drop(&mut pinned, unpin).await;
        // With the only connection still pinned this would wait 5 s and fail.
        let started = Instant::now();
        assert_eq!(
            scalar(&mut other, "SELECT 'served'").await,
            "served",
            "{unpin}"
        );
        assert!(started.elapsed() < Duration::from_secs(4), "{unpin}");
    }
}

#[tokio::test]
async fn pin_policy_reject_refuses_pinning_statements_with_1235_naming_the_reason() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config_with(
        &maria,
        "transaction",
        1,
        "[pool]\npin_policy = \"reject\"\n",
    ));
    let mut conn = connect(&proxy, USER).await;
    for pin in PINS {
        let error = conn
            .query_drop(pin.statement)
            .await
            .expect_err(pin.statement);
        assert_eq!(error_code(&error), 1235, "{}: {error}", pin.statement);
        let message = error_message(&error);
        assert!(
            message.contains(pin.reason),
            "{}: {message:?} does not name {:?}",
            pin.statement,
            pin.reason
        );
        assert_eq!(
            scalar(&mut conn, "SELECT 'still usable'").await,
            "still usable"
        );
    }
    // Nothing ran: no lock is held, no temporary table exists.
    let mut other = connect(&proxy, USER).await;
    assert_eq!(
        scalar(&mut other, "SELECT IS_USED_LOCK('pinned_lock')").await,
        "NULL"
    );
    let error = other
        .query_drop("SELECT * FROM pinned_tmp")
        .await
        .expect_err("a refused CREATE TEMPORARY TABLE ran");
    assert_eq!(error_code(&error), 1146);
}

//! MySQL commands besides COM_QUERY through churnstile, with mysql_async,
//! the mariadb CLI and a hand-made client against a real MariaDB: prepared
//! statements (parameters, NULL and blobs, COM_STMT_SEND_LONG_DATA, close,
//! re-preparing on other server connections, `max_prepared_statements`),
//! COM_INIT_DB, COM_PING, COM_SET_OPTION, COM_RESET_CONNECTION,
//! COM_CHANGE_USER, COM_STATISTICS, COM_FIELD_LIST, LOAD DATA LOCAL INFILE,
//! KILL with churnstile's connection ids, and command bytes churnstile does
//! not relay.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mysql_async::InfileData;
use mysql_async::prelude::Queryable;
use sha2::{Digest, Sha256};
use support::mysql_client::{
    change_user, connect, error_code, proxy_opts, query_drop, scalar, server_connection_id,
    tcp_opts, try_connect,
};
use support::raw_mysql::{self, RawMySql, describe, err_code, is_eof};
use support::wait::{POLL_INTERVAL, until_equal};
use support::{
    APP_DB, MYSQL_APP_USER, MYSQL_OTHER_USER, MariaDbServer, MySqlProxyUser, NATIVE_USER, Proxy,
    mysql_proxy_config, mysql_proxy_config_with,
};

const USER: MySqlProxyUser = MYSQL_APP_USER;

const COM_INIT_DB: u8 = 0x02;
const COM_FIELD_LIST: u8 = 0x04;
const COM_STATISTICS: u8 = 0x09;
const COM_SET_OPTION: u8 = 0x1B;

/// MariaDB with `app.items` and `app.blobs`, the database `other`, LOAD
/// DATA LOCAL allowed and packets up to 64 MiB.
fn server() -> MariaDbServer {
    let maria = MariaDbServer::builder()
        .option("--local-infile=1")
        .option("--max-allowed-packet=64M")
        .start();
    maria.query(&format!(
        "CREATE TABLE {APP_DB}.items (id INT AUTO_INCREMENT PRIMARY KEY, owner INT NOT NULL, \
             label VARCHAR(40)); \
         CREATE TABLE {APP_DB}.blobs (id INT AUTO_INCREMENT PRIMARY KEY, data LONGBLOB); \
         CREATE DATABASE other; \
         GRANT ALL ON other.* TO '{user}'@'%';",
        user = NATIVE_USER.name,
    ));
    maria
}

#[tokio::test]
async fn prepared_statements_take_parameters_of_every_kind() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let mut conn = connect(&proxy, USER).await;

    let row: Option<(i64, String, Option<i64>)> = conn
        .exec_first("SELECT ? + 1, CONCAT(?, '!'), ?", (41, "hi", None::<i64>))
        .await
        .unwrap();
    assert_eq!(row, Some((42, "hi!".to_owned(), None)));

    // Thirty statements, each executed a few times.
    for round in 0..3i64 {
        for n in 0..30i64 {
            let sql = format!("SELECT ? * {n}");
            let product: Option<i64> = conn.exec_first(&sql, (round,)).await.unwrap();
            assert_eq!(product, Some(round * n), "{sql}");
        }
    }

    // NULL and a blob of every byte value, into a table and back.
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    conn.exec_drop(
        "INSERT INTO items (owner, label) VALUES (?, ?)",
        (1, None::<String>),
    )
    .await
    .unwrap();
    conn.exec_drop("INSERT INTO blobs (data) VALUES (?)", (&blob,))
        .await
        .unwrap();
    let id = conn.last_insert_id().expect("an id");
    let row: Option<(Vec<u8>, bool)> = conn
        .exec_first(
            "SELECT b.data, i.label IS NULL FROM blobs b, items i WHERE b.id = ?",
            (id,),
        )
        .await
        .unwrap();
    let (back, label_is_null) = row.expect("the blob's row");
    assert!(label_is_null);
    assert_eq!(back.len(), blob.len());
    assert!(back == blob, "the blob came back changed");
}

#[tokio::test]
async fn a_parameter_over_16_mib_goes_as_send_long_data_and_arrives_whole() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let mut conn = connect(&proxy, USER).await;
    // mysql_async sends parameters whose total exceeds one packet's 16 MiB
    // as COM_STMT_SEND_LONG_DATA.
    let blob: Vec<u8> = (0..17 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let expected = Sha256::digest(&blob)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();

    conn.exec_drop("INSERT INTO blobs (data) VALUES (?)", (&blob,))
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", proxy.stderr()));
    let id = conn.last_insert_id().expect("an id");
    let row: Option<(u64, String)> = conn
        .exec_first(
            "SELECT LENGTH(data), SHA2(data, 256) FROM blobs WHERE id = ?",
            (id,),
        )
        .await
        .unwrap();
    assert_eq!(row, Some((blob.len() as u64, expected)));
    assert_eq!(scalar(&mut conn, "SELECT 'after'").await, "after");
}

#[tokio::test]
async fn a_row_over_16_mib_arrives_whole_in_both_protocols() {
    const LEN: usize = 17 * 1024 * 1024;
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut conn = connect(&proxy, USER).await;
    let sql = format!("SELECT REPEAT('x', {LEN}), 'after'");
    let text: Option<(Vec<u8>, String)> = conn.query_first(&sql).await.unwrap();
    let binary: Option<(Vec<u8>, String)> = conn.exec_first(&sql, ()).await.unwrap();
    for (protocol, row) in [("text", text), ("binary", binary)] {
        let (long, after) = row.expect("a row");
        assert_eq!(long.len(), LEN, "{protocol}");
        assert!(long.iter().all(|&b| b == b'x'), "{protocol}");
        assert_eq!(after, "after", "{protocol}");
    }
    assert_eq!(scalar(&mut conn, "SELECT 'next'").await, "next");
}

#[tokio::test]
async fn a_procedures_result_sets_arrive_by_text_and_prepared_call() {
    let maria = server();
    // Directly as root: the mariadb CLI would split the body at its `;`.
    let mut root = try_connect(tcp_opts(maria.port(), "root", "", Some(APP_DB)))
        .await
        .unwrap();
    query_drop(
        &mut root,
        "CREATE PROCEDURE two_results(IN base INT) \
         BEGIN SELECT base; SELECT base + 1, base + 2; END",
    )
    .await;
    root.disconnect().await.unwrap();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut conn = connect(&proxy, USER).await;
    let mut other = connect(&proxy, USER).await;
    for round in 0..3i64 {
        let mut result = conn
            .query_iter(format!("CALL two_results({round})"))
            .await
            .unwrap();
        assert_eq!(result.collect::<(i64,)>().await.unwrap(), [(round,)]);
        assert_eq!(
            result.collect::<(i64, i64)>().await.unwrap(),
            [(round + 1, round + 2)]
        );
        // The CALL's own OK ends the response.
        assert!(
            result
                .collect::<mysql_async::Row>()
                .await
                .unwrap()
                .is_empty()
        );
        assert!(result.is_empty());
        drop(result);

        let mut result = conn
            .exec_iter("CALL two_results(?)", (round * 10,))
            .await
            .unwrap();
        assert_eq!(result.collect::<(i64,)>().await.unwrap(), [(round * 10,)]);
        assert_eq!(
            result.collect::<(i64, i64)>().await.unwrap(),
            [(round * 10 + 1, round * 10 + 2)]
        );
        drop(result);
        // Released after the response: another client gets the connection.
        assert_eq!(scalar(&mut other, "SELECT 'other'").await, "other");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_share_statements_by_text_and_reprepare_them_on_other_connections() {
    const CLIENTS: usize = 4;
    const EXECUTIONS: i64 = 25;
    let maria = server();
    let proxy = Arc::new(Proxy::start(&mysql_proxy_config(&maria, "transaction", 2)));
    let prepares_before = maria.global_status("Com_stmt_prepare");
    let mut tasks = Vec::new();
    for client in 0..CLIENTS as i64 {
        let proxy = Arc::clone(&proxy);
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(&proxy, USER).await;
            let statement = conn.prep("SELECT ? * 2, CONNECTION_ID()").await.unwrap();
            let mut servers = std::collections::BTreeSet::new();
            for n in 0..EXECUTIONS {
                let value = client * 1000 + n;
                // Odd clients hold a connection in a transaction now and
                // then, so the others run on whichever one is free.
                if client % 2 == 1 && n % 5 == 0 {
                    query_drop(&mut conn, "BEGIN").await;
                }
                let row: Option<(i64, u64)> = conn.exec_first(&statement, (value,)).await.unwrap();
                let (doubled, server) = row.expect("a row");
                assert_eq!(doubled, value * 2, "client {client}");
                servers.insert(server);
                if client % 2 == 1 && n % 5 == 4 {
                    query_drop(&mut conn, "COMMIT").await;
                }
            }
            conn.close(statement).await.unwrap();
            conn.disconnect().await.unwrap();
            servers
        }));
    }
    let mut servers = std::collections::BTreeSet::new();
    for task in tasks {
        let used = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("clients finish within 120 s")
            .expect("client task succeeded");
        servers.extend(used);
    }
    let prepares = maria.global_status("Com_stmt_prepare") - prepares_before;
    println!("{CLIENTS} clients ran on server connections {servers:?}; {prepares} prepares");
    assert!(servers.len() <= 2, "{servers:?}");
    // Each client's COM_STMT_PREPARE reaches the server (it answers with
    // the metadata); executing re-prepares at most once per connection.
    let most = (CLIENTS + servers.len()) as u64;
    assert!(
        (CLIENTS as u64..=most).contains(&prepares),
        "{prepares} prepares for one statement text, {CLIENTS} clients, {} server connections",
        servers.len()
    );
}

#[tokio::test]
async fn a_statement_executed_on_a_connection_that_never_saw_it_is_prepared_there_first() {
    const SQL: &str = "SELECT ? * 3, CONNECTION_ID()";
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let prepares_before = maria.global_status("Com_stmt_prepare");
    let mut conn = connect(&proxy, USER).await;
    let statement = conn.prep(SQL).await.unwrap();
    let row: Option<(i64, u64)> = conn.exec_first(&statement, (1,)).await.unwrap();
    let (_, prepared_on) = row.expect("a row");

    // Both connections taken, then only the one with the statement kept.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut holder = connect(&proxy, USER).await;
        query_drop(&mut holder, "BEGIN").await;
        let id: u64 = scalar(&mut holder, "SELECT CONNECTION_ID()")
            .await
            .parse()
            .unwrap();
        holders.push((id, holder));
    }
    let (_, mut elsewhere) = holders
        .iter()
        .position(|(id, _)| *id != prepared_on)
        .map(|index| holders.swap_remove(index))
        .expect("two server connections");
    query_drop(&mut elsewhere, "COMMIT").await;

    let row: Option<(i64, u64)> = conn.exec_first(&statement, (14,)).await.unwrap();
    let (tripled, ran_on) = row.expect("a row");
    assert_eq!(tripled, 42);
    assert_ne!(ran_on, prepared_on, "the execute did not move");
    assert_eq!(
        maria.global_status("Com_stmt_prepare") - prepares_before,
        2,
        "the client's prepare and one on the other connection"
    );
    for (_, mut holder) in holders {
        query_drop(&mut holder, "COMMIT").await;
    }
}

#[tokio::test]
async fn beyond_max_prepared_statements_the_least_recently_used_are_closed_and_reprepared() {
    const STATEMENTS: i64 = 20;
    const LIMIT: u64 = 5;
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config_with(
        &maria,
        "transaction",
        1,
        &format!("[pool]\nmax_prepared_statements = {LIMIT}\n"),
    ));
    let mut conn = try_connect(proxy_opts(&proxy, USER).stmt_cache_size(100))
        .await
        .unwrap();
    let mut statements = Vec::new();
    for n in 0..STATEMENTS {
        statements.push(conn.prep(format!("SELECT ? + {n}")).await.unwrap());
    }
    for round in 0..2 {
        for (n, statement) in statements.iter().enumerate() {
            let sum: Option<i64> = conn.exec_first(statement, (round,)).await.unwrap();
            assert_eq!(sum, Some(round + n as i64), "statement {n}, round {round}");
        }
    }
    let open = maria.global_status("Prepared_stmt_count");
    assert!(
        (1..=LIMIT).contains(&open),
        "{open} statements open on the server with max_prepared_statements = {LIMIT}"
    );

    // A closed statement is gone for the client; the same text prepares anew.
    let closed = statements.remove(0);
    conn.close(closed).await.unwrap();
    let again = conn.prep("SELECT ? + 0").await.unwrap();
    let sum: Option<i64> = conn.exec_first(&again, (5,)).await.unwrap();
    assert_eq!(sum, Some(5));
}

/// SERVER_STATUS_CURSOR_EXISTS and SERVER_STATUS_LAST_ROW_SENT.
const CURSOR_EXISTS: u16 = 0x0040;
const LAST_ROW_SENT: u16 = 0x0080;

/// The status flags of an EOF packet.
fn eof_status(packet: &[u8]) -> u16 {
    assert!(is_eof(packet), "not EOF: {}", describe(packet));
    u16::from_le_bytes([packet[3], packet[4]])
}

#[tokio::test]
async fn a_cursor_keeps_its_server_connection_until_its_last_row_is_fetched() {
    const ROWS: u32 = 7;
    let maria = server();
    maria.query("INSERT INTO app.items (owner) VALUES (1), (2), (3), (4), (5), (6), (7)");
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let mut raw = RawMySql::login(proxy.mysql_port(), USER).await;
    let id = raw.prepare("SELECT id FROM items ORDER BY id").await;

    // COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY, one iteration.
    let mut execute = vec![0x17];
    execute.extend_from_slice(&id.to_le_bytes());
    execute.push(0x01);
    execute.extend_from_slice(&1u32.to_le_bytes());
    let head = raw.command_until_eof(&execute).await;
    let (eof, _) = head.split_last().expect("a reply");
    assert_ne!(eof_status(eof) & CURSOR_EXISTS, 0, "no cursor opened");

    // Another client takes a connection: not the cursor's.
    let mut other = connect(&proxy, USER).await;
    query_drop(&mut other, "BEGIN").await;
    assert_eq!(scalar(&mut other, "SELECT COUNT(*) FROM items").await, "7");

    let mut fetched = Vec::new();
    for _ in 0..ROWS {
        let mut fetch = vec![0x1C];
        fetch.extend_from_slice(&id.to_le_bytes());
        fetch.extend_from_slice(&2u32.to_le_bytes());
        let packets = raw.command_until_eof(&fetch).await;
        let (eof, rows) = packets.split_last().expect("a reply");
        // Binary rows: header, NULL bitmap, then the INT.
        fetched.extend(
            rows.iter()
                .map(|row| u32::from_le_bytes([row[2], row[3], row[4], row[5]])),
        );
        if eof_status(eof) & LAST_ROW_SENT != 0 {
            break;
        }
    }
    assert_eq!(fetched, (1..=ROWS).collect::<Vec<_>>());
    query_drop(&mut other, "COMMIT").await;
    assert_eq!(
        raw.scalar("SELECT 'after the cursor'").await,
        "after the cursor"
    );
}

#[tokio::test]
async fn com_init_db_changes_the_schema_and_it_follows_the_client() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut raw = RawMySql::login(proxy.mysql_port(), USER).await;
    let mut other_client = connect(&proxy, USER).await;

    let mut init_db = vec![COM_INIT_DB];
    init_db.extend_from_slice(b"other");
    let reply = raw.command(&init_db).await;
    assert_eq!(reply[0], raw_mysql::OK, "{}", describe(&reply));
    for _ in 0..3 {
        assert_eq!(raw.scalar("SELECT DATABASE()").await, "other");
        assert_eq!(scalar(&mut other_client, "SELECT DATABASE()").await, APP_DB);
    }

    let mut refused = vec![COM_INIT_DB];
    refused.extend_from_slice(b"no_such_db");
    let reply = raw.command(&refused).await;
    let code = err_code(&reply);
    assert!(code == 1044 || code == 1049, "{}", describe(&reply));
    assert_eq!(raw.scalar("SELECT DATABASE()").await, "other");
}

#[tokio::test]
async fn com_ping_is_answered_without_a_server_connection_while_idle() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let before = maria.connections_total();
    let mut conn = connect(&proxy, USER).await;
    for _ in 0..10 {
        conn.ping().await.unwrap();
    }
    assert_eq!(
        maria.connections_total(),
        before + 1,
        "pings while idle opened an upstream connection"
    );
    // In a transaction the server itself answers.
    query_drop(&mut conn, "BEGIN").await;
    conn.ping().await.unwrap();
    query_drop(&mut conn, "COMMIT").await;
    assert_eq!(scalar(&mut conn, "SELECT 'pong'").await, "pong");
}

/// SERVER_MORE_RESULTS_EXISTS.
const MORE_RESULTS: u16 = 0x0008;

/// The status flags of an OK packet with small affected-rows and insert-id
/// values (one byte each).
fn ok_status(packet: &[u8]) -> u16 {
    assert_eq!(packet[0], raw_mysql::OK, "{}", describe(packet));
    u16::from_le_bytes([packet[3], packet[4]])
}

#[tokio::test]
async fn com_set_option_turns_multi_statements_on_and_off_for_this_client_only() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut raw = RawMySql::login(proxy.mysql_port(), USER).await;
    let mut other_client = connect(&proxy, USER).await;
    let raw_multi = "DO 1; DO 2";
    let other_multi = "SELECT 1; SELECT 2";

    for round in 0..2 {
        // The raw client did not ask for CLIENT_MULTI_STATEMENTS at login.
        let reply = raw.query_no_rows(raw_multi).await;
        assert_eq!(
            err_code(&reply),
            1064,
            "round {round}: {}",
            describe(&reply)
        );
        let reply = raw.command(&[COM_SET_OPTION, 0, 0]).await;
        assert!(is_eof(&reply), "SET_OPTION ON: {}", describe(&reply));
        // The other client runs on the same server connection in between.
        let mut result = other_client.query_iter(other_multi).await.unwrap();
        assert_eq!(result.collect::<(i64,)>().await.unwrap(), [(1,)]);
        assert_eq!(result.collect::<(i64,)>().await.unwrap(), [(2,)]);
        drop(result);
        let first = raw.query_no_rows(raw_multi).await;
        assert_ne!(ok_status(&first) & MORE_RESULTS, 0, "round {round}");
        let (_, second) = raw.read_packet().await;
        assert_eq!(ok_status(&second) & MORE_RESULTS, 0, "round {round}");
        let reply = raw.command(&[COM_SET_OPTION, 1, 0]).await;
        assert!(is_eof(&reply), "SET_OPTION OFF: {}", describe(&reply));
    }
    let reply = raw.query_no_rows(raw_multi).await;
    assert_eq!(err_code(&reply), 1064, "{}", describe(&reply));
}

#[tokio::test]
async fn com_reset_connection_forgets_what_the_client_set() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config_with(
        &maria,
        "transaction",
        1,
        "[pool]\nquery_wait_timeout = 5\n",
    ));
    let mut conn = connect(&proxy, USER).await;
    let default_time_zone = scalar(&mut conn, "SELECT @@time_zone").await;
    query_drop(&mut conn, "SET time_zone = '+04:00'").await;
    // A user variable pins the client to the only server connection.
    query_drop(&mut conn, "SET @kept = 'yes'").await;
    assert_eq!(scalar(&mut conn, "SELECT @kept").await, "yes");

    assert!(
        conn.reset().await.unwrap(),
        "COM_RESET_CONNECTION supported"
    );
    assert_eq!(
        scalar(&mut conn, "SELECT @@time_zone").await,
        default_time_zone
    );
    // The pin went with the reset: another client gets the connection.
    let mut other = connect(&proxy, USER).await;
    let started = Instant::now();
    assert_eq!(scalar(&mut other, "SELECT 'served'").await, "served");
    assert!(started.elapsed() < Duration::from_secs(4));
    // Reading a user variable pins again, so only now.
    assert_eq!(scalar(&mut conn, "SELECT @kept").await, "NULL");
}

#[tokio::test]
async fn com_change_user_logs_in_as_another_configured_user_or_fails_with_1045() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let mut victim = connect(&proxy, USER).await;
    let mut conn = connect(&proxy, USER).await;
    query_drop(&mut conn, "SET time_zone = '+06:00'").await;

    change_user(&mut conn, MYSQL_OTHER_USER.name, MYSQL_OTHER_USER.password)
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", proxy.stderr()));
    assert_eq!(scalar(&mut conn, "SELECT DATABASE()").await, APP_DB);
    assert_ne!(
        scalar(&mut conn, "SELECT @@time_zone").await,
        "+06:00",
        "the old user's session state survived COM_CHANGE_USER"
    );
    // churnstile knows the new user: appuser's connections are not its own.
    let error = conn
        .query_drop(format!("KILL QUERY {}", victim.id()))
        .await
        .expect_err("otheruser killed appuser's query");
    assert_eq!(error_code(&error), 1095, "{error}");

    let mut failing = connect(&proxy, USER).await;
    let error = change_user(&mut failing, MYSQL_OTHER_USER.name, "wrong")
        .await
        .expect_err("a wrong password was accepted");
    assert_eq!(error_code(&error), 1045, "{error}");
    assert_eq!(scalar(&mut victim, "SELECT 'unharmed'").await, "unharmed");
}

#[tokio::test]
async fn com_statistics_and_com_field_list_are_relayed() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut raw = RawMySql::login(proxy.mysql_port(), USER).await;

    let statistics = raw.command(&[COM_STATISTICS]).await;
    let text = String::from_utf8_lossy(&statistics);
    assert!(
        text.starts_with("Uptime: ") && text.contains("Threads: "),
        "{text}"
    );

    let mut field_list = vec![COM_FIELD_LIST];
    field_list.extend_from_slice(b"items\0");
    let packets = raw.command_until_eof(&field_list).await;
    let (last, definitions) = packets.split_last().expect("a reply");
    assert!(is_eof(last), "{}", describe(last));
    let names: Vec<String> = definitions.iter().map(|p| column_name(p)).collect();
    assert_eq!(names, ["id", "owner", "label"]);

    // And the client goes on.
    assert_eq!(raw.scalar("SELECT 'next'").await, "next");
    // Compared with mariadb-admin's COM_STATISTICS through churnstile.
    let output = Command::new("mariadb-admin")
        .arg("--no-defaults")
        .args(["--protocol=tcp", "--host=127.0.0.1"])
        .arg(format!("--port={}", proxy.mysql_port()))
        .arg(format!("--user={}", USER.name))
        .arg(format!("--password={}", USER.password))
        .arg("status")
        .output()
        .expect("running mariadb-admin");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.starts_with("Uptime: "),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The name in a column definition: its fifth length-encoded string.
fn column_name(definition: &[u8]) -> String {
    let mut rest = definition;
    let field = |rest: &mut &[u8]| {
        let len = usize::from(rest[0]);
        let value = rest[1..1 + len].to_vec();
        *rest = &rest[1 + len..];
        value
    };
    for _ in 0..4 {
        field(&mut rest);
    }
    String::from_utf8(field(&mut rest)).expect("a UTF-8 name")
}

#[tokio::test]
async fn load_data_local_infile_rows_arrive() {
    const ROWS: usize = 50_000;
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut conn = connect(&proxy, USER).await;
    let file: String = (0..ROWS).map(|n| format!("{n}\trow {n}\n")).collect();
    let data = Bytes::from(file.clone());
    conn.set_infile_handler(async move {
        let chunks: Vec<std::io::Result<Bytes>> = data
            .chunks(100_000)
            .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
            .collect();
        Ok(Box::pin(futures_util::stream::iter(chunks)) as InfileData)
    });
    query_drop(
        &mut conn,
        "LOAD DATA LOCAL INFILE 'rows.tsv' INTO TABLE items (owner, label)",
    )
    .await;
    assert_eq!(conn.affected_rows(), ROWS as u64);
    let row: Option<(u64, i64, String)> = conn
        .query_first("SELECT COUNT(*), SUM(owner), MAX(label) FROM items")
        .await
        .unwrap();
    let sum = (ROWS * (ROWS - 1) / 2) as i64;
    assert_eq!(row, Some((ROWS as u64, sum, "row 9999".to_owned())));

    // The mariadb CLI with a real file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cli.tsv");
    std::fs::write(&path, "7\tfrom the cli\n8\tand another\n").unwrap();
    let output = Command::new("mariadb")
        .arg("--no-defaults")
        .args(["--protocol=tcp", "--host=127.0.0.1", "--local-infile=1"])
        .arg(format!("--port={}", proxy.mysql_port()))
        .arg(format!("--user={}", USER.name))
        .arg(format!("--password={}", USER.password))
        .arg(format!(
            "--execute=LOAD DATA LOCAL INFILE '{}' INTO TABLE items (owner, label)",
            path.display()
        ))
        .arg(APP_DB)
        .output()
        .expect("running mariadb");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT COUNT(*) FROM items WHERE owner IN (7, 8) AND label LIKE '%the cli'"
        )
        .await,
        "1"
    );
    assert_eq!(
        scalar(&mut conn, "SELECT COUNT(*) FROM items").await,
        (ROWS + 2).to_string()
    );
}

/// Waits until MariaDB runs `sql` for some connection.
async fn until_running(maria: &MariaDbServer, sql: &str) {
    until_equal(
        &format!("MariaDB runs {sql}"),
        POLL_INTERVAL * 200,
        "1".to_owned(),
        async || {
            maria.query(&format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = '{sql}'"
            ))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_stops_another_connections_query_of_the_same_user() {
    const SLEEP: &str = "SELECT SLEEP(30)";
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let mut sleeper = connect(&proxy, USER).await;
    let sleeper_id = sleeper.id();
    let mut killer = connect(&proxy, USER).await;

    let started = Instant::now();
    let sleeping = tokio::spawn(async move {
        let outcome = sleeper.query_drop(SLEEP).await;
        (sleeper, outcome)
    });
    until_running(&maria, SLEEP).await;
    query_drop(&mut killer, &format!("KILL QUERY {sleeper_id}")).await;
    let (mut sleeper, outcome) = tokio::time::timeout(Duration::from_secs(10), sleeping)
        .await
        .expect("the killed query ended")
        .unwrap();
    let error = outcome.expect_err("SLEEP(30) was not interrupted");
    assert_eq!(error_code(&error), 1317, "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Only the query ended: the client goes on.
    assert_eq!(scalar(&mut sleeper, "SELECT 'awake'").await, "awake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_connection_ends_the_other_client() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let mut idle = connect(&proxy, USER).await;
    let mut killer = connect(&proxy, USER).await;
    query_drop(&mut killer, &format!("KILL CONNECTION {}", idle.id())).await;
    let error = idle
        .query_drop("SELECT 1")
        .await
        .expect_err("a killed client still runs queries");
    assert!(
        !matches!(error, mysql_async::Error::Server(_)),
        "the connection was not closed: {error}"
    );

    // A client in the middle of a query is stopped too.
    const SLEEP: &str = "SELECT SLEEP(31)";
    let mut busy = connect(&proxy, USER).await;
    let busy_id = busy.id();
    let sleeping = tokio::spawn(async move { busy.query_drop(SLEEP).await });
    until_running(&maria, SLEEP).await;
    query_drop(&mut killer, &format!("KILL {busy_id}")).await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), sleeping)
        .await
        .expect("the killed client's query ended")
        .unwrap();
    assert!(outcome.is_err(), "SLEEP(31) completed");
    assert_eq!(scalar(&mut killer, "SELECT 'killer'").await, "killer");
}

#[tokio::test]
async fn a_client_gone_in_the_middle_of_a_query_has_the_query_stopped_and_its_connection_freed() {
    const SLEEP: &str = "SELECT SLEEP(32)";
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut vanishing = RawMySql::login(proxy.mysql_port(), USER).await;
    let mut payload = vec![0x03];
    payload.extend_from_slice(SLEEP.as_bytes());
    vanishing.send_command(&payload).await;
    until_running(&maria, SLEEP).await;
    // Gone without COM_QUIT, as a client that timed out and closed.
    drop(vanishing);

    let mut next = connect(&proxy, USER).await;
    let started = Instant::now();
    assert_eq!(scalar(&mut next, "SELECT 'next'").await, "next");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the only server connection stayed busy {:?} after its client left",
        started.elapsed()
    );
}

#[tokio::test]
async fn kill_connection_needs_no_free_server_connection_and_rolls_the_victim_back() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut victim = connect(&proxy, USER).await;
    query_drop(&mut victim, "BEGIN").await;
    query_drop(&mut victim, "INSERT INTO items (owner) VALUES (66)").await;
    let victim_server = server_connection_id(&mut victim).await;

    // The victim holds the only server connection in its transaction.
    let mut killer = connect(&proxy, USER).await;
    query_drop(&mut killer, &format!("KILL CONNECTION {}", victim.id())).await;
    assert_eq!(
        scalar(&mut killer, "SELECT COUNT(*) FROM items").await,
        "0",
        "the killed client's transaction was committed"
    );
    assert_eq!(
        server_connection_id(&mut killer).await,
        victim_server,
        "the server connection was replaced instead of reset"
    );
    assert!(victim.query_drop("SELECT 1").await.is_err());
}

#[tokio::test]
async fn kill_of_another_users_connection_is_1095_and_of_an_unknown_id_1094() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let mut victim = connect(&proxy, USER).await;
    let mut stranger = connect(&proxy, MYSQL_OTHER_USER).await;
    for kill in ["KILL", "KILL QUERY", "KILL CONNECTION"] {
        let error = stranger
            .query_drop(format!("{kill} {}", victim.id()))
            .await
            .expect_err("another user's kill went through");
        assert_eq!(error_code(&error), 1095, "{kill}: {error}");
    }
    let error = stranger
        .query_drop("KILL 999999")
        .await
        .expect_err("killed an unknown id");
    assert_eq!(error_code(&error), 1094, "{error}");
    assert_eq!(scalar(&mut victim, "SELECT 'alive'").await, "alive");
}

#[tokio::test]
async fn command_bytes_churnstile_does_not_relay_get_an_error_and_the_client_goes_on() {
    let maria = server();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let mut raw = RawMySql::login(proxy.mysql_port(), USER).await;
    // COM_SHUTDOWN, COM_BINLOG_DUMP, COM_DAEMON, and bytes no command has.
    for command in [0x08u8, 0x12, 0x1D, 0x42, 0x99] {
        let reply = raw.command(&[command, 0, 0, 0, 0]).await;
        assert_eq!(
            err_code(&reply),
            1047,
            "command {command:#04x}: {}",
            describe(&reply)
        );
    }
    let reply = raw.command(&[]).await;
    assert_eq!(
        reply[0],
        raw_mysql::ERR,
        "empty command: {}",
        describe(&reply)
    );
    assert_eq!(raw.scalar("SELECT 'still here'").await, "still here");
    assert_eq!(maria.query("SELECT 'server up'"), "server up");
}

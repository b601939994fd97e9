//! Session isolation across pooled server connections: whatever one client
//! leaves behind — an open or failed transaction, settings, prepared
//! statements, temp tables, LISTEN, advisory locks, held cursors, a running
//! query, an unfinished COPY, a half-read result — is gone before the next
//! client gets the same server connection. Each test uses a pool of one and
//! checks `pg_backend_pid()` to prove the connection really was reused.

mod support;

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use support::pg_client::{self, ConnectionTask, backend_pid, scalar, sqlstate};
use support::raw_pg::{self, RawConnection};
use support::wait::until_equal;
use support::{APP_DB, MD5_USER, PG_SUPERUSER, PgServer, Proxy, pg_proxy_config};
use tokio_postgres::Client;

const USER: &str = MD5_USER.name;
const PASSWORD: &str = MD5_USER.password;

/// A proxy with one server connection per pool, and a table `items` that
/// md5_user may use (created by the superuser, so md5_user has logged in
/// only through the proxy).
async fn setup() -> (PgServer, Proxy) {
    let pg = PgServer::start();
    pg.client(PG_SUPERUSER, APP_DB)
        .await
        .batch_execute("CREATE TABLE items (n int); GRANT ALL ON items TO md5_user")
        .await
        .expect("creating items");
    let proxy = Proxy::start(&pg_proxy_config(&pg, "[pool]\ndefault_pool_size = 1\n"));
    (pg, proxy)
}

/// Server-wide facts, asked as the superuser on a direct connection.
async fn count(pg: &PgServer, sql: &str) -> i64 {
    pg.query_i64(sql).await
}

/// Connects through the proxy with the connection task in a handle, so a
/// test can abort it: the socket closes with no Terminate, as when a client
/// process dies.
async fn connect_abortable(proxy: &Proxy) -> (Client, ConnectionTask) {
    pg_client::connect_watched(&proxy.connection_string(USER, PASSWORD, APP_DB))
        .await
        .expect("connecting through churnstile")
}

async fn kill_connection(task: ConnectionTask) {
    task.abort();
    let ended = task.await;
    assert!(ended.is_err_and(|e| e.is_cancelled()));
}

/// What every client must find: the server connection `pid` served the
/// previous client, and no transaction or changed setting is left of it.
async fn assert_clean_reuse(pg: &PgServer, client: &Client, pid: i32) {
    assert_eq!(
        backend_pid(client).await,
        pid,
        "server connection not reused"
    );
    assert_eq!(pg.connections_authorized(APP_DB, USER), 1);
    assert_eq!(
        scalar(client, "SELECT pg_current_xact_id_if_assigned() IS NULL").await,
        "t",
        "inherited an open transaction"
    );
    assert_eq!(
        scalar(client, "SELECT now() = statement_timestamp()").await,
        "t"
    );
    assert_eq!(scalar(client, "SHOW work_mem").await, "4MB");
    assert_eq!(scalar(client, "SELECT count(*) FROM items").await, "0");
}

/// psql reading its commands from a pipe, so a test can leave it idle in
/// the middle of a session and then kill it.
struct Psql {
    child: Child,
    stdin: ChildStdin,
}

impl Psql {
    fn start(proxy: &Proxy, application_name: &str) -> Psql {
        let conninfo = format!(
            "{} application_name={application_name}",
            proxy.connection_string(USER, PASSWORD, APP_DB)
        );
        let mut command = Command::new("psql");
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &conninfo])
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        let mut child = support::child::spawn_supervised(command).expect("starting psql");
        let stdin = child.stdin.take().expect("psql stdin is piped");
        Psql { child, stdin }
    }

    fn send(&mut self, sql: &str) {
        self.stdin
            .write_all(sql.as_bytes())
            .and_then(|()| self.stdin.flush())
            .expect("writing to psql");
    }

    /// SIGKILL: psql gets no chance to send Terminate.
    fn kill(mut self) {
        support::child::stop(&mut self.child, Signal::KILL, Duration::from_secs(5));
    }
}

impl Drop for Psql {
    fn drop(&mut self) {
        support::child::stop(&mut self.child, Signal::KILL, Duration::from_secs(5));
    }
}

#[tokio::test]
async fn a_transaction_left_open_by_a_killed_psql_is_rolled_back_for_the_next_client() {
    let (pg, proxy) = setup().await;
    let mut psql = Psql::start(&proxy, "victim");
    psql.send("BEGIN;\nINSERT INTO items VALUES (1);\nSET work_mem = '64MB';\n");
    let in_transaction = "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = 'victim' AND state = 'idle in transaction' \
         AND query LIKE 'SET work_mem%'";
    until_equal(
        "psql sessions idle in their transaction",
        Duration::from_secs(10),
        1,
        async || count(&pg, in_transaction).await,
    )
    .await;
    let pid = count(
        &pg,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'victim'",
    )
    .await;

    psql.kill();

    let next = proxy.connect(USER, PASSWORD, APP_DB).await;
    assert_clean_reuse(&pg, &next, i32::try_from(pid).unwrap()).await;
}

#[tokio::test]
async fn a_transaction_left_open_by_a_client_that_says_goodbye_is_rolled_back() {
    let (pg, proxy) = setup().await;
    let client = proxy.connect(USER, PASSWORD, APP_DB).await;
    let pid = backend_pid(&client).await;
    client
        .batch_execute("BEGIN; INSERT INTO items VALUES (1); SET work_mem = '64MB'")
        .await
        .unwrap();
    drop(client);

    let next = proxy.connect(USER, PASSWORD, APP_DB).await;
    assert_clean_reuse(&pg, &next, pid).await;
}

#[tokio::test]
async fn a_client_that_leaves_in_a_failed_transaction_does_not_affect_the_next() {
    let (pg, proxy) = setup().await;
    let client = proxy.connect(USER, PASSWORD, APP_DB).await;
    let pid = backend_pid(&client).await;
    client
        .batch_execute("BEGIN; INSERT INTO items VALUES (1)")
        .await
        .unwrap();
    let error = client.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&error), "22012");
    let error = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&error), "25P02");
    drop(client);

    let next = proxy.connect(USER, PASSWORD, APP_DB).await;
    assert_clean_reuse(&pg, &next, pid).await;
    assert_eq!(scalar(&next, "SELECT 'works'").await, "works");
}

#[tokio::test]
async fn session_state_left_by_one_client_is_invisible_to_the_next() {
    let (pg, proxy) = setup().await;
    let client = proxy.connect(USER, PASSWORD, APP_DB).await;
    let pid = backend_pid(&client).await;
    client
        .batch_execute(
            "SET statement_timeout = '42s';
             SET work_mem = '64MB';
             SET myapp.tenant = 'acme';
             PREPARE sql_statement AS SELECT 1;
             CREATE TEMP TABLE scratch (n int);
             LISTEN chan;
             SELECT pg_advisory_lock(42);
             DECLARE held_cursor CURSOR WITH HOLD FOR SELECT 1;
             SET search_path = private, public;",
        )
        .await
        .unwrap();
    let protocol_statement = client.prepare("SELECT $1::int").await.unwrap();
    // Make sure there was state to leak.
    for (sql, expected) in [
        (
            "SELECT count(*) FILTER (WHERE from_sql)::text || '+' || \
             count(*) FILTER (WHERE NOT from_sql)::text FROM pg_prepared_statements",
            "1+1",
        ),
        ("SELECT count(*) FROM pg_cursors", "1"),
        ("SELECT count(*) FROM pg_listening_channels()", "1"),
        ("SELECT to_regclass('pg_temp.scratch') IS NOT NULL", "t"),
        ("SHOW search_path", "private, public"),
        ("SHOW statement_timeout", "42s"),
        ("SELECT current_setting('myapp.tenant')", "acme"),
    ] {
        assert_eq!(scalar(&client, sql).await, expected, "{sql}");
    }
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        )
        .await,
        1
    );
    // Dropping the client first sends Terminate and leaves the protocol-level
    // statement in place (its Close would need the client).
    drop(client);
    drop(protocol_statement);

    let next = proxy.connect(USER, PASSWORD, APP_DB).await;
    assert_clean_reuse(&pg, &next, pid).await;
    for (sql, expected) in [
        ("SELECT count(*) FROM pg_prepared_statements", "0"),
        ("SELECT count(*) FROM pg_cursors", "0"),
        ("SELECT count(*) FROM pg_listening_channels()", "0"),
        ("SELECT to_regclass('pg_temp.scratch') IS NULL", "t"),
        ("SHOW search_path", "\"$user\", public"),
        ("SHOW statement_timeout", "0"),
        (
            "SELECT coalesce(current_setting('myapp.tenant', true), '')",
            "",
        ),
        // Only what this client's own startup packet asked for (churnstile
        // keeps startup settings in place across the reset for the next
        // client with the same ones); nothing the previous client SET.
        (
            "SELECT coalesce(string_agg(name, ','), 'none') FROM pg_settings \
             WHERE source = 'session'",
            "client_encoding",
        ),
    ] {
        assert_eq!(scalar(&next, sql).await, expected, "{sql}");
    }
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM pg_class WHERE relname = 'scratch'"
        )
        .await,
        0,
        "the temp table still exists"
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        )
        .await,
        0,
        "the advisory lock is still held"
    );
    next.batch_execute("PREPARE sql_statement AS SELECT 2")
        .await
        .expect("the name sql_statement is free again");
}

#[tokio::test]
async fn a_client_that_dies_during_a_long_query_has_it_cancelled_and_the_connection_reused() {
    let (pg, proxy) = setup().await;
    let (client, connection) = connect_abortable(&proxy).await;
    let pid = backend_pid(&client).await;
    let query = tokio::spawn(async move { client.batch_execute("SELECT pg_sleep(60)").await });
    let sleeping = "SELECT count(*) FROM pg_stat_activity \
         WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'";
    until_equal(
        "backends running pg_sleep(60)",
        Duration::from_secs(10),
        1,
        async || count(&pg, sleeping).await,
    )
    .await;

    kill_connection(connection).await;
    let left = Instant::now();
    let next = proxy.connect(USER, PASSWORD, APP_DB).await;
    let waited = left.elapsed();

    assert!(
        waited < Duration::from_secs(4),
        "the next client waited {waited:?} for the server connection"
    );
    assert_clean_reuse(&pg, &next, pid).await;
    assert_eq!(count(&pg, sleeping).await, 0);
    assert!(
        pg.log().contains("canceling statement due to user request"),
        "the server log shows no cancel"
    );
    assert!(
        query.await.unwrap().is_err(),
        "the killed client's query reported success"
    );
}

/// Logs in by hand as md5_user and reads to the first ReadyForQuery, for
/// what tokio-postgres cannot be stopped in the middle of: sending COPY
/// data, reading a result. Reads wait as long as they take.
async fn raw_connect(port: u16) -> RawConnection {
    let mut connection = RawConnection::connect(port).await.without_read_limit();
    connection.send(&raw_pg::app_startup(USER)).await;
    connection.authenticate_md5(MD5_USER).await;
    connection.wait_ready().await;
    connection
}

/// The PID of the server backend serving `connection`.
async fn raw_backend_pid(connection: &mut RawConnection) -> i32 {
    connection
        .send(&raw_pg::query("SELECT pg_backend_pid()"))
        .await;
    let mut pid = None;
    loop {
        let message = connection.expect_message().await;
        match message.0 {
            b'D' => {
                let columns = raw_pg::data_row(&message);
                assert_eq!(columns.len(), 1);
                pid = Some(columns[0].parse().unwrap());
            }
            b'Z' => return pid.expect("a row"),
            b'E' => panic!("error: {:?}", raw_pg::error_fields(&message)),
            _ => {}
        }
    }
}

/// A CopyData message.
fn copy_data(data: &[u8]) -> Vec<u8> {
    raw_pg::message(b'd', data)
}

#[tokio::test]
async fn a_client_that_dies_during_copy_from_stdin_commits_nothing_and_the_connection_is_reused() {
    const ROWS: i64 = 1_000;
    let (pg, proxy) = setup().await;
    let mut client = raw_connect(proxy.port()).await;
    let pid = raw_backend_pid(&mut client).await;
    client.send(&raw_pg::query("COPY items FROM STDIN")).await;
    let (tag, _) = client.expect_message().await;
    assert_eq!(tag, b'G', "expected CopyInResponse");
    for row in 0..ROWS {
        client.send(&copy_data(format!("{row}\n").as_bytes())).await;
    }
    until_equal(
        "rows the server has read from the COPY",
        Duration::from_secs(10),
        ROWS,
        async || {
            count(
                &pg,
                "SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy",
            )
            .await
        },
    )
    .await;

    drop(client);

    let next = proxy.connect(USER, PASSWORD, APP_DB).await;
    assert_clean_reuse(&pg, &next, pid).await;
    assert_eq!(
        count(&pg, "SELECT count(*) FROM pg_stat_progress_copy").await,
        0
    );
    assert!(
        pg.log().contains("client disconnected during COPY"),
        "the server log shows no CopyFail"
    );
}

#[tokio::test]
async fn a_client_that_dies_while_reading_a_large_result_leaves_a_reusable_connection() {
    let (pg, proxy) = setup().await;
    let mut client = raw_connect(proxy.port()).await;
    let pid = raw_backend_pid(&mut client).await;
    // 500 MB of 100 kB rows: far more than any socket buffer holds.
    client
        .send(&raw_pg::query(
            "SELECT repeat('x', 100000) FROM generate_series(1, 5000)",
        ))
        .await;
    loop {
        let message = client.expect_message().await;
        match message.0 {
            b'D' => break,
            b'E' => panic!("error: {:?}", raw_pg::error_fields(&message)),
            _ => {}
        }
    }

    drop(client);

    let next = proxy.connect(USER, PASSWORD, APP_DB).await;
    assert_clean_reuse(&pg, &next, pid).await;
    let streaming = "SELECT count(*) FROM pg_stat_activity \
         WHERE query LIKE 'SELECT repeat%' AND state = 'active'";
    assert_eq!(count(&pg, streaming).await, 0);
}

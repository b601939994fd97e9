//! Session isolation across pooled server connections: whatever one client
//! leaves behind — an open or failed transaction, settings, prepared
//! statements, temp tables, LISTEN, advisory locks, held cursors, a running
//! query, an unfinished COPY, a half-read result — is gone before the next
//! client gets the same server connection. Each test uses a pool of one and
//! checks `pg_backend_pid()` to prove the connection really was reused.

mod support;

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::message::frontend;
use rustix::process::Signal;
use support::{APP_DB, MD5_USER, PG_SUPERUSER, PgServer, Proxy, pg_proxy_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const USER: &str = MD5_USER.name;
const PASSWORD: &str = MD5_USER.password;
const POLL: Duration = Duration::from_millis(50);

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

/// Polls `condition` until it holds; panics naming `what` after `timeout`.
async fn eventually(what: &str, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// The SQLSTATE of a server error; panics on any other error.
fn sqlstate(error: &tokio_postgres::Error) -> &str {
    error
        .as_db_error()
        .unwrap_or_else(|| panic!("expected an ErrorResponse, got: {error}"))
        .code()
        .code()
}

/// Runs one query that selects one value and returns it as text.
async fn scalar(client: &Client, sql: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

async fn backend_pid(client: &Client) -> i32 {
    scalar(client, "SELECT pg_backend_pid()")
        .await
        .parse()
        .expect("pg_backend_pid() is an integer")
}

/// Server-wide facts, asked as the superuser on a direct connection.
async fn count(pg: &PgServer, sql: &str) -> i64 {
    pg.query_i64(sql).await
}

/// Connects through the proxy with the connection task in a handle, so a
/// test can abort it: the socket closes with no Terminate, as when a client
/// process dies.
async fn connect_abortable(proxy: &Proxy) -> (Client, JoinHandle<()>) {
    let (client, connection) =
        tokio_postgres::connect(&proxy.connection_string(USER, PASSWORD, APP_DB), NoTls)
            .await
            .expect("connecting through churnstile");
    let task = tokio::spawn(async move {
        // The test kills this connection on purpose.
        let _ = connection.await;
    });
    (client, task)
}

async fn kill_connection(task: JoinHandle<()>) {
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
    eventually(
        "psql idle in its transaction",
        Duration::from_secs(10),
        async || count(&pg, in_transaction).await == 1,
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
        // Nothing: this client's startup settings equal the server's values,
        // so none needed setting, and none of the previous client's remain.
        (
            "SELECT coalesce(string_agg(name, ','), 'none') FROM pg_settings \
             WHERE source = 'session'",
            "none",
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
    eventually(
        "pg_sleep(60) running",
        Duration::from_secs(10),
        async || count(&pg, sleeping).await == 1,
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

/// A client speaking the protocol by hand, for what tokio-postgres cannot
/// be stopped in the middle of: sending COPY data, reading a result.
struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    /// Logs in (MD5) and reads to the first ReadyForQuery.
    async fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .expect("connecting to churnstile");
        let mut client = RawClient {
            stream,
            buf: BytesMut::new(),
        };
        let mut out = BytesMut::new();
        frontend::startup_message([("user", USER), ("database", APP_DB)], &mut out).unwrap();
        client.send(&out).await;
        loop {
            match client.read_message().await {
                (b'R', body) if body[..4] == 5_i32.to_be_bytes() => {
                    let salt: [u8; 4] = body[4..8].try_into().unwrap();
                    let hash = md5_hash(USER.as_bytes(), PASSWORD.as_bytes(), salt);
                    out.clear();
                    frontend::password_message(hash.as_bytes(), &mut out).unwrap();
                    client.send(&out).await;
                }
                (b'Z', _) => return client,
                (b'E', body) => panic!("login refused: {body:?}"),
                _ => {}
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("writing to churnstile");
    }

    async fn query(&mut self, sql: &str) {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).unwrap();
        self.send(&out).await;
    }

    async fn read_message(&mut self) -> (u8, Bytes) {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    return (tag, self.buf.split_to(len - 4).freeze());
                }
            }
            let read = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .expect("reading from churnstile");
            assert_ne!(read, 0, "churnstile closed the connection");
        }
    }

    async fn pid(&mut self) -> i32 {
        self.query("SELECT pg_backend_pid()").await;
        let mut pid = None;
        loop {
            match self.read_message().await {
                (b'D', mut row) => {
                    assert_eq!(row.get_i16(), 1);
                    let len = row.get_i32() as usize;
                    let text = std::str::from_utf8(&row[..len]).unwrap();
                    pid = Some(text.parse().unwrap());
                }
                (b'Z', _) => return pid.expect("a row"),
                (b'E', body) => panic!("error: {body:?}"),
                _ => {}
            }
        }
    }
}

/// A CopyData message.
fn copy_data(data: &[u8]) -> Vec<u8> {
    let mut message = vec![b'd'];
    message.extend_from_slice(&(data.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(data);
    message
}

#[tokio::test]
async fn a_client_that_dies_during_copy_from_stdin_commits_nothing_and_the_connection_is_reused() {
    const ROWS: i64 = 1_000;
    let (pg, proxy) = setup().await;
    let mut client = RawClient::connect(proxy.port()).await;
    let pid = client.pid().await;
    client.query("COPY items FROM STDIN").await;
    let (tag, _) = client.read_message().await;
    assert_eq!(tag, b'G', "expected CopyInResponse");
    for row in 0..ROWS {
        client.send(&copy_data(format!("{row}\n").as_bytes())).await;
    }
    eventually(
        "the server has read every row sent",
        Duration::from_secs(10),
        async || {
            count(
                &pg,
                "SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy",
            )
            .await
                == ROWS
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
    let mut client = RawClient::connect(proxy.port()).await;
    let pid = client.pid().await;
    // 500 MB of 100 kB rows: far more than any socket buffer holds.
    client
        .query("SELECT repeat('x', 100000) FROM generate_series(1, 5000)")
        .await;
    loop {
        match client.read_message().await {
            (b'D', _) => break,
            (b'E', body) => panic!("error: {body:?}"),
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

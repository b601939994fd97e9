//! Query cancellation through churnstile: clients get churnstile's own
//! BackendKeyData, a CancelRequest carrying it reaches exactly the server
//! connection serving that client (from tokio-postgres, psql and raw
//! packets), and CancelRequests with unknown keys change nothing.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::pg_client::sqlstate;
use support::raw_pg::{self, RawConnection};
use support::wait::until_equal;
use support::{APP_DB, MD5_USER, PgServer, Proxy, Signal, TRUST_USER, child};
use support::{pg_proxy_config, trust_proxy_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_postgres::NoTls;

/// Bound on anything that should happen at once (a cancel landing, a login).
const PROMPTLY: Duration = Duration::from_secs(5);
/// Bound on waiting for a query to show up as running on the server.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(10);

const QUERY_CANCELED: &str = "57014";

/// Waits until `count` server backends are running a statement containing
/// `fragment`, so a cancel sent next cannot arrive before the query starts.
async fn wait_running(pg: &PgServer, fragment: &str, count: i64) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE '%{fragment}%'"
    );
    until_equal(
        &format!("backends running `{fragment}`"),
        RUNNING_TIMEOUT,
        count,
        async || pg.query_i64(&sql).await,
    )
    .await;
}

/// A client speaking the wire protocol itself, to see what tokio-postgres hides.
struct RawClient {
    connection: RawConnection,
    /// The BackendKeyData this client was given: (process id, secret key).
    key: (i32, i32),
}

impl RawClient {
    /// Logs in as a user that churnstile trusts (no password exchange).
    async fn log_in(port: u16, user: &str) -> RawClient {
        let mut connection = RawConnection::connect(port).await;
        connection.send(&raw_pg::app_startup(user)).await;
        let mut keys = Vec::new();
        loop {
            let (tag, body) = connection.expect_message().await;
            match tag {
                b'R' => assert_eq!(body, 0i32.to_be_bytes(), "expected AuthenticationOk"),
                b'K' => keys.push((be_i32(&body[0..4]), be_i32(&body[4..8]))),
                b'S' => {}
                b'Z' => break,
                b'E' => panic!("login refused: {}", String::from_utf8_lossy(&body)),
                other => panic!("unexpected message '{}' during login", other as char),
            }
        }
        assert_eq!(keys.len(), 1, "exactly one BackendKeyData per login");
        RawClient {
            connection,
            key: keys[0],
        }
    }

    async fn send_query(&mut self, sql: &str) {
        self.connection.send(&raw_pg::query(sql)).await;
    }

    /// Reads a simple query's answer up to ReadyForQuery: the text of every
    /// column of every row, or the SQLSTATE of the error.
    async fn finish_query(&mut self) -> Result<Vec<Vec<String>>, String> {
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let message = self.connection.expect_message().await;
            match message.0 {
                b'D' => rows.push(raw_pg::data_row(&message)),
                b'E' => error = Some(raw_pg::error_fields(&message)[&'C'].clone()),
                b'Z' => break,
                _ => {}
            }
        }
        error.map_or(Ok(rows), Err)
    }
}

fn be_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes(bytes.try_into().unwrap())
}

/// Sends a CancelRequest to churnstile and waits for it to close the
/// connection, as PostgreSQL does once it has read one.
async fn send_cancel(port: u16, process_id: i32, secret_key: i32) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(&raw_pg::cancel_request(process_id, secret_key))
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = timeout(PROMPTLY, stream.read_to_end(&mut answer))
        .await
        .expect("churnstile closes a cancel connection promptly");
    assert!(read.is_ok(), "cancel connection ended with {read:?}");
    assert!(
        answer.is_empty(),
        "churnstile answered a CancelRequest with {} bytes",
        answer.len()
    );
}

#[tokio::test]
async fn tokio_postgres_cancel_stops_the_running_query_and_the_session_stays_usable() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let client = proxy.connect_as(MD5_USER).await;
    let cancel = client.cancel_token();

    let running = tokio::spawn(async move {
        let outcome = client.simple_query("SELECT pg_sleep(30)").await;
        (client, outcome)
    });
    wait_running(&pg, "pg_sleep(30)", 1).await;
    let cancelled_at = Instant::now();
    cancel.cancel_query(NoTls).await.unwrap();

    let (client, outcome) = timeout(PROMPTLY, running)
        .await
        .expect("the cancelled query ends promptly")
        .unwrap();
    let error = outcome.expect_err("pg_sleep(30) was cancelled");
    assert_eq!(sqlstate(&error), QUERY_CANCELED, "{error}");
    assert!(
        cancelled_at.elapsed() < PROMPTLY,
        "cancel took {:?}",
        cancelled_at.elapsed()
    );

    let row = client.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(pg.connections_authorized(APP_DB, MD5_USER.name), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_psql_cancels_its_query_through_the_proxy() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let mut command = Command::new("psql");
    command
        .args(["-X", "-h", "127.0.0.1", "-U", MD5_USER.name, "-d", APP_DB])
        .args(["-p", &proxy.port().to_string()])
        .args(["-c", "SELECT pg_sleep(30)"])
        .env("PGPASSWORD", MD5_USER.password)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut psql = child::spawn_supervised(command).expect("psql runs");

    wait_running(&pg, "pg_sleep(30)", 1).await;
    let interrupted_at = Instant::now();
    child::send_signal(&mut psql, Signal::INT);
    let status = tokio::task::spawn_blocking(move || {
        let status = child::wait_exit(&mut psql, PROMPTLY);
        if status.is_none() {
            child::stop(&mut psql, Signal::KILL, PROMPTLY);
        }
        (status, psql.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    let (status, output) = status;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let status = status.unwrap_or_else(|| panic!("psql still running after Ctrl-C:\n{stderr}"));
    assert!(
        interrupted_at.elapsed() < PROMPTLY,
        "psql took {:?}",
        interrupted_at.elapsed()
    );
    assert!(
        stderr.contains("canceling statement due to user request"),
        "psql stderr:\n{stderr}"
    );
    // psql exits 1 when its query failed (and would die of the signal, 130,
    // without a cancel handler).
    assert_eq!(child::exit_code(status), 1, "psql stderr:\n{stderr}");
}

#[tokio::test]
async fn a_cancel_with_an_unknown_key_changes_nothing() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let client = proxy.connect_as(MD5_USER).await;

    let running = tokio::spawn(async move {
        let outcome = client
            .query_one("SELECT 7 AS n, pg_sleep(2)::text", &[])
            .await;
        (client, outcome)
    });
    wait_running(&pg, "pg_sleep(2)", 1).await;
    let process_id = rand::random_range(1..i32::MAX);
    send_cancel(proxy.port(), process_id, rand::random()).await;

    let (client, outcome) = timeout(RUNNING_TIMEOUT, running).await.unwrap().unwrap();
    let row = outcome.unwrap_or_else(|e| panic!("the sleeping query failed: {e}"));
    assert_eq!(row.get::<_, i32>("n"), 7);

    let row = client.query_one("SELECT 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    let newcomer = proxy.connect_as(MD5_USER).await;
    let row = newcomer.query_one("SELECT 3", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_only_the_client_it_was_meant_for() {
    const CLIENTS: usize = 10;
    const VICTIM: usize = 3;
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, "[pool]\ndefault_pool_size = 10\n"));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(proxy.connect_as(MD5_USER).await);
    }
    let cancel = clients[VICTIM].cancel_token();

    let started = Instant::now();
    let running: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(index, client)| {
            tokio::spawn(async move {
                let sql = format!("SELECT {index} AS n, pg_sleep(5)::text");
                let outcome = client.query_one(&sql, &[]).await;
                (outcome, started.elapsed())
            })
        })
        .collect();
    wait_running(&pg, "pg_sleep(5)", i64::try_from(CLIENTS).unwrap()).await;
    cancel.cancel_query(NoTls).await.unwrap();

    for (index, task) in running.into_iter().enumerate() {
        let (outcome, elapsed) = timeout(RUNNING_TIMEOUT, task).await.unwrap().unwrap();
        if index == VICTIM {
            let error = outcome.expect_err("the cancelled client's query failed");
            assert_eq!(sqlstate(&error), QUERY_CANCELED, "{error}");
            assert!(
                elapsed < Duration::from_secs(5),
                "the cancelled query still ran {elapsed:?}"
            );
        } else {
            let row = outcome.unwrap_or_else(|e| panic!("client {index} was hit: {e}"));
            assert_eq!(row.get::<_, i32>("n"), i32::try_from(index).unwrap());
            assert!(
                elapsed >= Duration::from_secs(5),
                "client {index}: {elapsed:?}"
            );
        }
    }
    assert_eq!(pg.connections_authorized(APP_DB, MD5_USER.name), CLIENTS);
}

#[tokio::test]
async fn clients_see_churnstiles_own_cancel_key_and_it_works() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&trust_proxy_config(&pg, ""));
    let mut first = RawClient::log_in(proxy.port(), TRUST_USER.name).await;
    let second = RawClient::log_in(proxy.port(), TRUST_USER.name).await;
    assert_ne!(first.key, second.key, "two clients share a cancel key");

    first.send_query("SELECT pg_backend_pid()").await;
    let rows = first.finish_query().await.unwrap();
    let backend_pid: i32 = rows[0][0].parse().unwrap();
    assert!(backend_pid > 0);
    assert_ne!(
        first.key.0, backend_pid,
        "the client was given the server's own process id"
    );

    first.send_query("SELECT pg_sleep(30)").await;
    wait_running(&pg, "pg_sleep(30)", 1).await;
    send_cancel(proxy.port(), first.key.0, first.key.1).await;
    let outcome = timeout(PROMPTLY, first.finish_query())
        .await
        .expect("the cancelled query ends promptly");
    assert_eq!(outcome, Err(QUERY_CANCELED.to_owned()));

    // The server's process id with the secret churnstile gave out is no key.
    first.send_query("SELECT 5 AS n, pg_sleep(2)").await;
    wait_running(&pg, "pg_sleep(2)", 1).await;
    send_cancel(proxy.port(), backend_pid, first.key.1).await;
    let rows = first.finish_query().await.unwrap();
    assert_eq!(rows[0][0], "5");
}

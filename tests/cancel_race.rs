//! Cancellation under transaction pooling, where a client's server
//! connection changes between transactions: a cancel only ever stops the
//! query of the client that sent it, however its timing races the client's
//! moves between server connections, and a client that vanishes mid-query
//! has its query stopped and its server connection reused.

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::message::frontend;
use support::pg_client::scalar;
use support::wait::eventually;
use support::{APP_DB, MD5_USER, PG_SUPERUSER, PgServer, Proxy, pg_proxy_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;

const USER: &str = MD5_USER.name;
const PASSWORD: &str = MD5_USER.password;
const QUERY_CANCELED: &str = "57014";
/// Bound on any one answer from the proxy.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

fn proxy(pg: &PgServer, pool_size: usize, extra: &str) -> Proxy {
    Proxy::start(&pg_proxy_config(
        pg,
        &format!("[pool]\npool_mode = \"transaction\"\ndefault_pool_size = {pool_size}\n{extra}"),
    ))
}

/// A client speaking the protocol by hand, so it knows its cancel key and
/// can send a CancelRequest and see it delivered before going on.
struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    /// BackendKeyData: process id and secret key.
    key: (i32, i32),
}

impl RawClient {
    async fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .expect("connecting");
        let mut client = RawClient {
            stream,
            buf: BytesMut::new(),
            key: (0, 0),
        };
        let mut out = BytesMut::new();
        frontend::startup_message([("user", USER), ("database", APP_DB)], &mut out).unwrap();
        client.stream.write_all(&out).await.unwrap();
        loop {
            match client.read_message().await {
                (b'R', body) if body[..4] == 5_i32.to_be_bytes() => {
                    let salt: [u8; 4] = body[4..8].try_into().unwrap();
                    let hash = md5_hash(USER.as_bytes(), PASSWORD.as_bytes(), salt);
                    out.clear();
                    frontend::password_message(hash.as_bytes(), &mut out).unwrap();
                    client.stream.write_all(&out).await.unwrap();
                }
                (b'K', mut body) => client.key = (body.get_i32(), body.get_i32()),
                (b'Z', _) => return client,
                (b'E', body) => panic!("login refused: {body:?}"),
                _ => {}
            }
        }
    }

    async fn read_message(&mut self) -> (u8, Bytes) {
        tokio::time::timeout(ANSWER_TIMEOUT, async {
            loop {
                if self.buf.len() >= 5 {
                    let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                    if self.buf.len() > len {
                        let tag = self.buf[0];
                        self.buf.advance(5);
                        return (tag, self.buf.split_to(len - 4).freeze());
                    }
                }
                let read = self.stream.read_buf(&mut self.buf).await.expect("reading");
                assert_ne!(read, 0, "the connection was closed");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer within {ANSWER_TIMEOUT:?}"))
    }

    async fn send_query(&mut self, sql: &str) {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Reads a simple query's answer: `Err(SQLSTATE)` if it failed.
    async fn finish_query(&mut self) -> Result<(), String> {
        let mut error = None;
        loop {
            match self.read_message().await {
                (b'E', body) => {
                    error = body
                        .split(|&b| b == 0)
                        .find_map(|field| field.strip_prefix(b"C"))
                        .map(|code| String::from_utf8_lossy(code).into_owned());
                }
                (b'Z', _) => return error.map_or(Ok(()), Err),
                _ => {}
            }
        }
    }

    /// Reads up to the NoticeResponse a running query sends.
    async fn wait_for_notice(&mut self) {
        loop {
            match self.read_message().await {
                (b'N', _) => return,
                (tag, _) => assert!(
                    !matches!(tag, b'E' | b'Z'),
                    "the query ended before its notice"
                ),
            }
        }
    }

    /// Sends a CancelRequest with this client's key and waits until the
    /// proxy closes that connection, i.e. has delivered or dropped it.
    async fn cancel(&self, port: u16) {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .expect("connecting to cancel");
        let mut out = BytesMut::new();
        frontend::cancel_request(self.key.0, self.key.1, &mut out);
        stream.write_all(&out).await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(ANSWER_TIMEOUT, stream.read_to_end(&mut rest))
            .await
            .expect("churnstile closes a cancel connection")
            .expect("reading the cancel connection");
        assert!(rest.is_empty(), "a CancelRequest gets no answer");
    }
}

/// Half a second of sleep that tells the client when it starts running.
const SLEEP_ANNOUNCED: &str = "DO $$ BEGIN RAISE NOTICE 'started'; PERFORM pg_sleep(0.5); END $$";

/// What one client saw.
#[derive(Debug, Default)]
struct Tally {
    queries: usize,
    cancels_sent: usize,
    canceled: usize,
    /// 57014 for a query no cancel was sent for, or other errors.
    wrong: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_racing_pool_hops_only_ever_stop_the_query_of_the_client_that_sent_them() {
    const CLIENTS: usize = 100;
    const SLEEPER_QUERIES: usize = 10;
    const CANCELLER_QUERIES: usize = 5;
    let pg = PgServer::start();
    let proxy = proxy(&pg, 10, "[general]\nmax_client_conn = 300\n");
    let port = proxy.port();
    let started = Instant::now();

    let mut tasks = Vec::new();
    for number in 0..CLIENTS {
        let cancels = number % 2 == 1;
        let conninfo = proxy.connection_string(USER, PASSWORD, APP_DB);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            if !cancels {
                let client = support::pg_client::connect(&conninfo).await.unwrap();
                for query in 0..SLEEPER_QUERIES {
                    let sql = if query % 3 == 0 {
                        "BEGIN; SELECT pg_sleep(0.02); SELECT pg_sleep(0.03); COMMIT"
                    } else {
                        "SELECT pg_sleep(0.05)"
                    };
                    tally.queries += 1;
                    if let Err(error) = client.batch_execute(sql).await {
                        tally
                            .wrong
                            .push(format!("client {number} query {query}: {error}"));
                    }
                }
                return tally;
            }
            let mut client = RawClient::connect(port).await;
            for query in 0..CANCELLER_QUERIES {
                client.send_query(SLEEP_ANNOUNCED).await;
                tally.queries += 1;
                // No cancel; at once (mostly while waiting for a server
                // connection); or at a random moment after the query
                // started, up to past its end.
                let cancel = match rand::random_range(0..5) {
                    0 => false,
                    1 => {
                        client.cancel(port).await;
                        true
                    }
                    _ => {
                        client.wait_for_notice().await;
                        let delay = Duration::from_millis(rand::random_range(0..700));
                        tokio::time::sleep(delay).await;
                        client.cancel(port).await;
                        true
                    }
                };
                tally.cancels_sent += usize::from(cancel);
                match client.finish_query().await {
                    Ok(()) => {}
                    Err(code) if code == QUERY_CANCELED && cancel => tally.canceled += 1,
                    Err(code) => tally.wrong.push(format!(
                        "client {number} query {query} (cancel sent: {cancel}): {code}"
                    )),
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let tally = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("all clients finished within 60 s")
            .expect("a client panicked");
        total.queries += tally.queries;
        total.cancels_sent += tally.cancels_sent;
        total.canceled += tally.canceled;
        total.wrong.extend(tally.wrong);
    }
    println!(
        "{} queries, {} cancels sent, {} queries canceled, in {:?}",
        total.queries,
        total.cancels_sent,
        total.canceled,
        started.elapsed()
    );
    assert!(total.wrong.is_empty(), "{:#?}", total.wrong);
    assert_eq!(
        total.queries,
        CLIENTS / 2 * (SLEEPER_QUERIES + CANCELLER_QUERIES)
    );
    assert!(
        total.canceled >= 20,
        "only {} of {} cancels stopped a query: the test did not race anything",
        total.canceled,
        total.cancels_sent
    );
    assert!(pg.connections_authorized(APP_DB, USER) <= 10);
}

/// A client that vanishes while `sql` runs `pg_sleep(60)`: the query is
/// stopped and the next client gets the same server connection at once.
async fn vanish_mid_query(sql: &str) {
    let pg = PgServer::start();
    pg.client(PG_SUPERUSER, APP_DB)
        .await
        .batch_execute("CREATE TABLE items (n int); GRANT ALL ON items TO md5_user")
        .await
        .unwrap();
    let proxy = proxy(&pg, 1, "");
    let (client, connection) =
        tokio_postgres::connect(&proxy.connection_string(USER, PASSWORD, APP_DB), NoTls)
            .await
            .unwrap();
    let connection = tokio::spawn(async move {
        // Killed on purpose below.
        let _ = connection.await;
    });
    let pid = scalar(&client, "SELECT pg_backend_pid()").await;
    let query = {
        let sql = sql.to_owned();
        tokio::spawn(async move { client.batch_execute(&sql).await })
    };
    let sleeping = "SELECT count(*) FROM pg_stat_activity \
         WHERE query LIKE '%pg_sleep(60)%' AND state = 'active' AND pid <> pg_backend_pid()";
    eventually(
        "pg_sleep(60) running",
        Duration::from_secs(10),
        async || pg.query_i64(sleeping).await == 1,
    )
    .await;

    connection.abort();
    assert!(connection.await.is_err_and(|e| e.is_cancelled()));
    let left = Instant::now();
    let next = proxy.connect(USER, PASSWORD, APP_DB).await;
    assert_eq!(scalar(&next, "SELECT pg_backend_pid()").await, pid);
    let waited = left.elapsed();

    assert!(
        waited < Duration::from_secs(4),
        "the next client waited {waited:?} for the server connection"
    );
    assert_eq!(pg.query_i64(sleeping).await, 0, "the query still runs");
    assert_eq!(pg.connections_authorized(APP_DB, USER), 1);
    assert_eq!(scalar(&next, "SELECT count(*) FROM items").await, "0");
    assert_eq!(
        scalar(&next, "SELECT pg_current_xact_id_if_assigned() IS NULL").await,
        "t"
    );
    assert!(
        query.await.unwrap().is_err(),
        "the vanished client's query reported success"
    );
}

#[tokio::test]
async fn a_client_vanishing_mid_query_has_it_cancelled_and_its_server_connection_reused() {
    vanish_mid_query("SELECT pg_sleep(60)").await;
}

#[tokio::test]
async fn a_client_vanishing_mid_transaction_has_it_rolled_back_and_its_server_connection_reused() {
    vanish_mid_query("BEGIN; INSERT INTO items VALUES (1); SELECT pg_sleep(60)").await;
}

#[tokio::test]
async fn a_cancel_arriving_while_churnstile_checks_session_state_leaves_the_session_working() {
    let pg = PgServer::start();
    let proxy = proxy(&pg, 1, "");
    let mut client = RawClient::connect(proxy.port()).await;
    // After a SET, churnstile asks the server for the session's state. A
    // lock on pg_class holds that question on the server while the client
    // sends a cancel for its query, which has already finished.
    let admin = pg.client(PG_SUPERUSER, APP_DB).await;
    admin
        .batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_class IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    client.send_query("SET work_mem = '5MB'").await;
    assert_eq!(client.finish_query().await, Ok(()));
    let waiting = "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = 'app' AND wait_event_type = 'Lock' \
         AND query LIKE '%pg_catalog.pg_settings%'";
    eventually(
        "the session-state check waits for the lock",
        Duration::from_secs(10),
        async || pg.query_i64(waiting).await == 1,
    )
    .await;

    client.cancel(proxy.port()).await;
    assert_eq!(
        pg.query_i64(waiting).await,
        1,
        "the cancel stopped churnstile's own query"
    );
    admin.batch_execute("ROLLBACK").await.unwrap();

    client
        .send_query("SELECT current_setting('work_mem')")
        .await;
    assert_eq!(client.finish_query().await, Ok(()));
    assert_eq!(pg.connections_authorized(APP_DB, USER), 1);
    assert!(
        !pg.log().contains("canceling statement due to user request"),
        "a statement was cancelled"
    );
}

#[tokio::test]
async fn a_pinned_client_can_cancel_its_queries() {
    let pg = PgServer::start();
    let proxy = proxy(&pg, 1, "");
    let mut client = RawClient::connect(proxy.port()).await;
    client.send_query("LISTEN jobs; SET work_mem = '5MB'").await;
    assert_eq!(client.finish_query().await, Ok(()));
    for round in 0..3 {
        client
            .send_query("DO $$ BEGIN RAISE NOTICE 'started'; PERFORM pg_sleep(30); END $$")
            .await;
        client.wait_for_notice().await;
        let started = Instant::now();
        client.cancel(proxy.port()).await;
        assert_eq!(
            client.finish_query().await,
            Err(QUERY_CANCELED.to_owned()),
            "round {round}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

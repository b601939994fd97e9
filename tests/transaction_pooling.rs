//! Transaction and statement pooling as applications meet them: many
//! clients share a few server connections one transaction at a time, the
//! extended protocol (pipelines, prepared statements, the unnamed statement,
//! COPY) answers exactly as a direct connection would while clients hop
//! between server connections, and `pool_mode = "statement"` refuses
//! transaction blocks.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt, future};
use postgres_protocol::IsNull;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::message::frontend;
use support::pg_client::{backend_pid, scalar, sqlstate};
use support::wait::eventually;
use support::{APP_DB, MD5_USER, PG_SUPERUSER, PgServer, Proxy, pg_proxy_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

const USER: &str = MD5_USER.name;
const PASSWORD: &str = MD5_USER.password;
/// Bound on any one answer from the proxy or the server.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// A server with the table `items (n int)` that md5_user may use, created
/// by the superuser so md5_user logs in only through the proxy.
async fn server() -> PgServer {
    let pg = PgServer::start();
    superuser(&pg)
        .await
        .batch_execute("CREATE TABLE items (n int); GRANT ALL ON items TO md5_user")
        .await
        .expect("creating items");
    pg
}

async fn superuser(pg: &PgServer) -> Client {
    pg.client(PG_SUPERUSER, APP_DB).await
}

/// churnstile in `pool_mode` with `pool_size` server connections, plus `extra` TOML.
fn proxy(pg: &PgServer, pool_mode: &str, pool_size: usize, extra: &str) -> Proxy {
    Proxy::start(&pg_proxy_config(
        pg,
        &format!("[pool]\npool_mode = \"{pool_mode}\"\ndefault_pool_size = {pool_size}\n{extra}"),
    ))
}

async fn connect(proxy: &Proxy) -> Client {
    proxy.connect(USER, PASSWORD, APP_DB).await
}

/// Clients running short transactions through the proxy until stopped, so
/// a test's own client keeps landing on different server connections.
struct Interference {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Interference {
    async fn start(proxy: &Proxy, clients: usize) -> Interference {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let client = connect(proxy).await;
            let stop = Arc::clone(&stop);
            tasks.push(tokio::spawn(async move {
                // Bounded by the test's stop(); the cap only guards a hang.
                for _ in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    client
                        .batch_execute("BEGIN; SELECT count(*) FROM items; COMMIT")
                        .await
                        .expect("interfering transaction");
                }
            }));
        }
        Interference { stop, tasks }
    }

    /// Stops the clients; panics if any of them failed.
    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("interfering client panicked");
        }
    }
}

/// Frontend messages built up for one write, counting the ReadyForQuery
/// messages they will be answered with.
#[derive(Default)]
struct Messages {
    out: BytesMut,
    ready_owed: usize,
}

impl Messages {
    fn parse(mut self, name: &str, sql: &str) -> Self {
        frontend::parse(name, sql, [], &mut self.out).unwrap();
        self
    }

    /// Binds the unnamed portal to `statement` with text parameters.
    fn bind(mut self, statement: &str, params: &[&str]) -> Self {
        frontend::bind(
            "",
            statement,
            [],
            params,
            |param, buf| {
                buf.put_slice(param.as_bytes());
                Ok(IsNull::No)
            },
            [],
            &mut self.out,
        )
        .unwrap_or_else(|_| panic!("encoding Bind"));
        self
    }

    fn describe_portal(mut self) -> Self {
        frontend::describe(b'P', "", &mut self.out).unwrap();
        self
    }

    fn describe_statement(mut self, name: &str) -> Self {
        frontend::describe(b'S', name, &mut self.out).unwrap();
        self
    }

    fn execute(mut self) -> Self {
        frontend::execute("", 0, &mut self.out).unwrap();
        self
    }

    fn close_statement(mut self, name: &str) -> Self {
        frontend::close(b'S', name, &mut self.out).unwrap();
        self
    }

    fn flush(mut self) -> Self {
        frontend::flush(&mut self.out);
        self
    }

    fn sync(mut self) -> Self {
        frontend::sync(&mut self.out);
        self.ready_owed += 1;
        self
    }

    fn query(mut self, sql: &str) -> Self {
        frontend::query(sql, &mut self.out).unwrap();
        self.ready_owed += 1;
        self
    }
}

/// A client speaking the protocol by hand, for what tokio-postgres does not
/// let a test control: Sync groups, the unnamed statement, statement names.
struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    /// Logs in as md5_user (MD5) to `app` and reads to the first ReadyForQuery.
    async fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .expect("connecting");
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
                (b'E', body) => panic!("login refused: {}", describe(b'E', &body)),
                _ => {}
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("writing");
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

    /// Sends `messages` in one write and returns every message of the answer,
    /// described, up to the last ReadyForQuery owed.
    async fn run(&mut self, messages: Messages) -> Vec<String> {
        self.send(&messages.out).await;
        self.read_answer(messages.ready_owed).await
    }

    async fn read_answer(&mut self, mut ready_owed: usize) -> Vec<String> {
        let mut transcript = Vec::new();
        while ready_owed > 0 {
            let (tag, body) = self.read_message().await;
            if tag == b'Z' {
                ready_owed -= 1;
            }
            transcript.push(describe(tag, &body));
        }
        transcript
    }

    async fn pid(&mut self) -> i32 {
        let answer = self
            .run(Messages::default().query("SELECT pg_backend_pid()"))
            .await;
        answer
            .iter()
            .find_map(|message| message.strip_prefix("DataRow["))
            .and_then(|row| row.strip_suffix(']'))
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {answer:?}"))
    }
}

/// A backend message as a line a test can compare and a person can read;
/// errors keep severity, SQLSTATE and message.
fn describe(tag: u8, body: &[u8]) -> String {
    let mut rest = body;
    match tag {
        b'1' => "ParseComplete".into(),
        b'2' => "BindComplete".into(),
        b'3' => "CloseComplete".into(),
        b'n' => "NoData".into(),
        b's' => "PortalSuspended".into(),
        b'I' => "EmptyQueryResponse".into(),
        b'c' => "CopyDone".into(),
        b'Z' => format!("ReadyForQuery({})", body[0] as char),
        b'C' => format!("CommandComplete({})", cstr(&mut rest)),
        b'S' => format!("ParameterStatus({}={})", cstr(&mut rest), cstr(&mut rest)),
        b'D' => {
            let columns = rest.get_i16();
            let values: Vec<String> = (0..columns)
                .map(|_| match usize::try_from(rest.get_i32()) {
                    Ok(len) => {
                        let value = String::from_utf8_lossy(&rest[..len]).into_owned();
                        rest.advance(len);
                        value
                    }
                    Err(_) => "NULL".into(),
                })
                .collect();
            format!("DataRow[{}]", values.join(","))
        }
        b'T' => {
            let columns = rest.get_i16();
            let names: Vec<String> = (0..columns)
                .map(|_| {
                    let name = cstr(&mut rest);
                    rest.advance(6);
                    let type_oid = rest.get_u32();
                    rest.advance(8);
                    format!("{name}:{type_oid}")
                })
                .collect();
            format!("RowDescription[{}]", names.join(","))
        }
        b't' => {
            let count = rest.get_i16();
            let oids: Vec<String> = (0..count).map(|_| rest.get_u32().to_string()).collect();
            format!("ParameterDescription[{}]", oids.join(","))
        }
        b'E' | b'N' => {
            let mut fields = BTreeMap::new();
            while let Some((&kind, tail)) = rest.split_first()
                && kind != 0
            {
                rest = tail;
                fields.insert(kind, cstr(&mut rest));
            }
            let field = |kind: u8| fields.get(&kind).cloned().unwrap_or_default();
            let name = if tag == b'E' { "Error" } else { "Notice" };
            format!("{name}({} {} {})", field(b'S'), field(b'C'), field(b'M'))
        }
        other => format!("{}({} bytes)", other as char, body.len()),
    }
}

fn cstr(rest: &mut &[u8]) -> String {
    let end = rest.iter().position(|&b| b == 0).expect("a C string");
    let text = String::from_utf8_lossy(&rest[..end]).into_owned();
    *rest = &rest[end + 1..];
    text
}

async fn direct_answer(pg: &PgServer, messages: Messages) -> Vec<String> {
    let mut direct = RawClient::connect(pg.port()).await;
    direct.run(messages).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_running_short_transactions_share_ten_server_connections() {
    const CLIENTS: i32 = 200;
    const TRANSACTIONS: i32 = 5;
    let pg = PgServer::start();
    superuser(&pg)
        .await
        .batch_execute(
            "CREATE TABLE ledger (client int, seq int, PRIMARY KEY (client, seq));
             GRANT ALL ON ledger TO md5_user",
        )
        .await
        .unwrap();
    let proxy = proxy(&pg, "transaction", 10, "[general]\nmax_client_conn = 250\n");

    let started = Instant::now();
    // Every client is connected before any starts: 200 sessions at once on
    // 10 server connections, which session pooling could not do.
    let all_connected = Arc::new(tokio::sync::Barrier::new(CLIENTS as usize));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client_id| {
            let conninfo = proxy.connection_string(USER, PASSWORD, APP_DB);
            let all_connected = Arc::clone(&all_connected);
            tokio::spawn(async move {
                let client = support::pg_client::connect(&conninfo)
                    .await
                    .map_err(|e| format!("client {client_id} connecting: {e}"))?;
                all_connected.wait().await;
                for seq in 0..TRANSACTIONS {
                    let step = |what: &str, e: tokio_postgres::Error| {
                        format!("client {client_id} transaction {seq} {what}: {e}")
                    };
                    client
                        .batch_execute("BEGIN")
                        .await
                        .map_err(|e| step("BEGIN", e))?;
                    client
                        .execute("INSERT INTO ledger VALUES ($1, $2)", &[&client_id, &seq])
                        .await
                        .map_err(|e| step("INSERT", e))?;
                    let mine: i64 = client
                        .query_one(
                            "SELECT count(*) FROM ledger WHERE client = $1",
                            &[&client_id],
                        )
                        .await
                        .map_err(|e| step("SELECT", e))?
                        .get(0);
                    if mine != i64::from(seq) + 1 {
                        return Err(format!(
                            "client {client_id} sees {mine} of its rows in transaction {seq}"
                        ));
                    }
                    client
                        .batch_execute("COMMIT")
                        .await
                        .map_err(|e| step("COMMIT", e))?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    let results = tokio::time::timeout(Duration::from_secs(60), future::join_all(tasks))
        .await
        .expect("200 clients finished within 60 s");
    let elapsed = started.elapsed();

    let errors: Vec<String> = results
        .into_iter()
        .filter_map(|result| result.expect("client task panicked").err())
        .collect();
    assert!(
        errors.is_empty(),
        "{} clients failed: {errors:#?}",
        errors.len()
    );
    let opened = pg.connections_authorized(APP_DB, USER);
    println!(
        "{CLIENTS} clients × {TRANSACTIONS} transactions in {elapsed:?}; upstream logins: {opened}"
    );
    assert!(
        (1..=10).contains(&opened),
        "{opened} upstream connections for a pool of 10"
    );
    assert!(pg.backends(APP_DB, USER).await <= 10);
    assert_eq!(
        scalar(&superuser(&pg).await, "SELECT count(*) FROM ledger").await,
        (CLIENTS * TRANSACTIONS).to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_of_clients_sharing_one_server_connection_each_get_their_own_results() {
    const CLIENTS: i32 = 4;
    const ROUNDS: i32 = 25;
    const PIPELINE: i32 = 8;
    let pg = server().await;
    let proxy = proxy(&pg, "transaction", 1, "");

    let mut tasks = Vec::new();
    for client_id in 0..CLIENTS {
        let client = connect(&proxy).await;
        tasks.push(tokio::spawn(async move {
            let statement = client
                .prepare("SELECT $1::int AS n, $2::text AS who")
                .await
                .unwrap();
            let who = format!("client {client_id}");
            for round in 0..ROUNDS {
                let numbers: Vec<i32> = (0..PIPELINE).map(|i| round * 100 + i).collect();
                // A prepared statement: Bind/Execute/Sync groups all in flight at once.
                let prepared = future::try_join_all(
                    numbers
                        .iter()
                        .map(|n| async { client.query_one(&statement, &[n, &who]).await }),
                );
                // Query text: each is a Parse/Describe/Sync, then Bind/Execute/Sync, then Close.
                let texts = future::try_join_all(numbers.iter().map(|n| async {
                    client
                        .query_one("SELECT $1::int + 1000000, $2::text", &[n, &who])
                        .await
                }));
                let (prepared, texts) = future::try_join(prepared, texts)
                    .await
                    .unwrap_or_else(|e| panic!("{who} round {round}: {e}"));
                for ((n, row), text_row) in numbers.iter().zip(&prepared).zip(&texts) {
                    assert_eq!(row.get::<_, i32>(0), *n, "{who} round {round}");
                    assert_eq!(row.get::<_, String>(1), who, "{who} round {round}");
                    assert_eq!(
                        text_row.get::<_, i32>(0),
                        n + 1_000_000,
                        "{who} round {round}"
                    );
                    assert_eq!(text_row.get::<_, String>(1), who, "{who} round {round}");
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(60), future::join_all(tasks))
        .await
        .expect("pipelines finished within 60 s")
        .into_iter()
        .for_each(|result| result.expect("a pipelining client failed"));
    assert_eq!(pg.connections_authorized(APP_DB, USER), 1);
}

/// Several Sync groups in one write: errors in the middle of a group and in
/// a group of their own, a named statement surviving an error, a failed
/// transaction, a Close and a re-Parse of the same name.
fn pipeline_with_errors() -> Messages {
    Messages::default()
        .parse("", "SELECT 1 AS one")
        .bind("", &[])
        .describe_portal()
        .execute()
        .sync()
        .parse("named_a", "SELECT $1::int * 2 AS doubled")
        .describe_statement("named_a")
        .bind("named_a", &["21"])
        .describe_portal()
        .execute()
        .sync()
        .parse("", "SELECT 1/0")
        .bind("", &[])
        .execute()
        .sync()
        .bind("named_a", &["5"])
        .execute()
        .sync()
        .parse("", "SELECT 2")
        .bind("", &[])
        .execute()
        .parse("", "SELECT * FROM no_such_table")
        .bind("", &[])
        .execute()
        .parse("", "SELECT 3")
        .bind("", &[])
        .execute()
        .sync()
        .query("SELECT 4; SELECT 5")
        .parse("", "BEGIN")
        .bind("", &[])
        .execute()
        .sync()
        .bind("named_a", &["7"])
        .execute()
        .parse("", "SELECT 1/0")
        .bind("", &[])
        .execute()
        .sync()
        .bind("named_a", &["8"])
        .execute()
        .sync()
        .query("ROLLBACK")
        .close_statement("named_a")
        .sync()
        .bind("named_a", &["9"])
        .execute()
        .sync()
        .parse("named_a", "SELECT $1::text || '!' AS shout")
        .bind("named_a", &["hey"])
        .describe_portal()
        .execute()
        .close_statement("named_a")
        .sync()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_with_several_syncs_and_errors_gets_exactly_the_answers_of_a_direct_connection()
{
    const CLIENTS: usize = 3;
    const ROUNDS: usize = 10;
    let pg = server().await;
    let expected = direct_answer(&pg, pipeline_with_errors()).await;
    assert!(
        expected.contains(&"Error(ERROR 42P01 relation \"no_such_table\" does not exist)".into())
            && expected.contains(&"DataRow[hey!]".into()),
        "the direct connection answered {expected:#?}"
    );
    let direct_logins = pg.connections_authorized(APP_DB, USER);
    let proxy = proxy(&pg, "transaction", 2, "");
    let interference = Interference::start(&proxy, 2).await;

    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = RawClient::connect(proxy.port()).await;
        let expected = expected.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let answer = client.run(pipeline_with_errors()).await;
                assert_eq!(answer, expected, "round {round}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("a pipelining client got other answers");
    }
    interference.stop().await;
    assert_eq!(pg.connections_authorized(APP_DB, USER) - direct_logins, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unnamed_statement_keeps_its_meaning_within_a_sync_group_while_other_clients_interleave()
 {
    const ROUNDS: usize = 30;
    let pg = server().await;
    let proxy = proxy(&pg, "transaction", 2, "");
    let interference = Interference::start(&proxy, 3).await;
    let mut client = RawClient::connect(proxy.port()).await;
    let mut pids = BTreeSet::new();

    for round in 0..ROUNDS {
        // Parsed once, bound twice, in one group.
        let answer = client
            .run(
                Messages::default()
                    .parse("", "SELECT $1::int + 100")
                    .bind("", &["1"])
                    .execute()
                    .bind("", &["2"])
                    .execute()
                    .sync(),
            )
            .await;
        assert_eq!(
            answer,
            [
                "ParseComplete",
                "BindComplete",
                "DataRow[101]",
                "CommandComplete(SELECT 1)",
                "BindComplete",
                "DataRow[102]",
                "CommandComplete(SELECT 1)",
                "ReadyForQuery(I)"
            ],
            "round {round}"
        );
        // Parsed and flushed; bound only after another client has logged
        // in and run a query meanwhile. The server connection must stay.
        client
            .send(
                &Messages::default()
                    .parse("", "SELECT pg_backend_pid()")
                    .bind("", &[])
                    .execute()
                    .parse("", &format!("SELECT $1::text || '-{round}'"))
                    .flush()
                    .out,
            )
            .await;
        let mut flushed = Vec::new();
        for _ in 0..5 {
            let (tag, body) = client.read_message().await;
            flushed.push(describe(tag, &body));
        }
        let other = connect(&proxy).await;
        assert_eq!(
            scalar(&other, "SELECT 'other client'").await,
            "other client"
        );
        let answer = client
            .run(
                Messages::default()
                    .bind("", &["late"])
                    .execute()
                    .parse("", "SELECT pg_backend_pid()")
                    .bind("", &[])
                    .execute()
                    .sync(),
            )
            .await;
        let pid = flushed[2].clone();
        assert_eq!(
            [flushed, answer].concat(),
            [
                "ParseComplete",
                "BindComplete",
                &pid,
                "CommandComplete(SELECT 1)",
                "ParseComplete",
                "BindComplete",
                &format!("DataRow[late-{round}]"),
                "CommandComplete(SELECT 1)",
                "ParseComplete",
                "BindComplete",
                &pid,
                "CommandComplete(SELECT 1)",
                "ReadyForQuery(I)"
            ],
            "round {round}"
        );
        pids.insert(pid);
    }
    interference.stop().await;
    println!("the client's Sync groups ran on {pids:?}");
    assert_eq!(pg.connections_authorized(APP_DB, USER), 2);
}

#[tokio::test]
async fn a_client_never_runs_another_clients_unnamed_statement_and_keeps_its_own() {
    let pg = server().await;
    let bind_unnamed = || Messages::default().bind("", &["x"]).execute().sync();
    let direct_never_parsed = direct_answer(&pg, bind_unnamed()).await;
    assert_eq!(
        direct_never_parsed,
        [
            "Error(ERROR 26000 unnamed prepared statement does not exist)",
            "ReadyForQuery(I)"
        ]
    );
    let proxy = proxy(&pg, "transaction", 1, "");
    let mut owner = RawClient::connect(proxy.port()).await;
    let mut other = RawClient::connect(proxy.port()).await;

    let parsed = owner
        .run(
            Messages::default()
                .parse("", "SELECT 'secret of the owner, ' || $1::text")
                .sync(),
        )
        .await;
    assert_eq!(parsed, ["ParseComplete", "ReadyForQuery(I)"]);
    // The other client, on the same (only) server connection, never parsed one.
    assert_eq!(other.run(bind_unnamed()).await, direct_never_parsed);
    // The owner's unnamed statement is still its own in a later Sync group,
    // as on a direct connection, until a simple query drops it.
    for round in 0..3 {
        assert_eq!(
            owner.run(bind_unnamed()).await,
            [
                "BindComplete",
                "DataRow[secret of the owner, x]",
                "CommandComplete(SELECT 1)",
                "ReadyForQuery(I)"
            ],
            "round {round}"
        );
        assert_eq!(other.run(bind_unnamed()).await, direct_never_parsed);
    }
    assert_eq!(other.pid().await, owner.pid().await);
    assert_eq!(owner.run(bind_unnamed()).await, direct_never_parsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_copy_out_hold_the_server_connection_until_they_finish() {
    const ROWS: i32 = 1_000;
    let pg = server().await;
    let proxy = proxy(&pg, "transaction", 1, "");
    let copier = connect(&proxy).await;
    let other = connect(&proxy).await;

    let sink = copier
        .copy_in::<_, Bytes>("COPY items FROM STDIN")
        .await
        .unwrap();
    let mut sink = std::pin::pin!(sink);
    for n in 0..ROWS / 2 {
        sink.send(Bytes::from(format!("{n}\n"))).await.unwrap();
    }
    // The only server connection is in COPY: the other client's query can
    // only run once the COPY has committed.
    let counted = tokio::spawn(async move {
        let count = scalar(&other, "SELECT count(*) FROM items").await;
        (other, count)
    });
    for n in ROWS / 2..ROWS {
        sink.send(Bytes::from(format!("{n}\n"))).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), ROWS as u64);
    let (other, count) = counted.await.unwrap();
    assert_eq!(count, ROWS.to_string());

    let stream = copier
        .copy_out("COPY (SELECT n FROM items ORDER BY n) TO STDOUT")
        .await
        .unwrap_or_else(|e| panic!("COPY TO STDOUT: {e}; churnstile says:\n{}", proxy.stderr()));
    let chunks: Vec<Bytes> = stream.map(|chunk| chunk.unwrap()).collect().await;
    let expected: String = (0..ROWS).map(|n| format!("{n}\n")).collect();
    assert_eq!(String::from_utf8(chunks.concat()).unwrap(), expected);

    // COPY inside a transaction that is rolled back adds nothing.
    copier.batch_execute("BEGIN").await.unwrap();
    let sink = copier
        .copy_in::<_, Bytes>("COPY items FROM STDIN")
        .await
        .unwrap();
    let mut sink = std::pin::pin!(sink);
    sink.send(Bytes::from_static(b"-1\n")).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 1);
    assert_eq!(
        scalar(&copier, "SELECT count(*) FROM items").await,
        (ROWS + 1).to_string()
    );
    copier.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        scalar(&other, "SELECT count(*) FROM items").await,
        ROWS.to_string()
    );
    assert_eq!(pg.connections_authorized(APP_DB, USER), 1);
}

/// A CopyData message.
fn copy_data(data: &[u8]) -> Vec<u8> {
    let mut message = vec![b'd'];
    message.extend_from_slice(&(data.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(data);
    message
}

/// A client starts COPY FROM STDIN with `start`, sends rows, and vanishes
/// without CopyDone; the next client must get the same server connection
/// with nothing committed.
async fn vanish_mid_copy_in(start: Messages) {
    const ROWS: i64 = 1_000;
    let pg = server().await;
    let proxy = proxy(&pg, "transaction", 1, "");
    let mut client = RawClient::connect(proxy.port()).await;
    let pid = client.pid().await;
    client.send(&start.out).await;
    loop {
        match client.read_message().await {
            (b'G', _) => break,
            (b'1' | b'2', _) => {}
            (tag, body) => panic!("expected CopyInResponse, got {}", describe(tag, &body)),
        }
    }
    for n in 0..ROWS {
        client.send(&copy_data(format!("{n}\n").as_bytes())).await;
    }
    eventually(
        "the server has read every row sent",
        Duration::from_secs(10),
        async || {
            pg.query_i64("SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy")
                .await
                == ROWS
        },
    )
    .await;

    drop(client);

    let left = Instant::now();
    let next = connect(&proxy).await;
    let waited = left.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "the next client waited {waited:?} for the server connection"
    );
    assert_eq!(
        backend_pid(&next).await,
        pid,
        "server connection not reused"
    );
    assert_eq!(scalar(&next, "SELECT count(*) FROM items").await, "0");
    next.batch_execute("BEGIN; INSERT INTO items VALUES (1); COMMIT")
        .await
        .unwrap();
    assert_eq!(scalar(&next, "SELECT count(*) FROM items").await, "1");
    assert_eq!(
        pg.query_i64("SELECT count(*) FROM pg_stat_progress_copy")
            .await,
        0
    );
    assert_eq!(pg.connections_authorized(APP_DB, USER), 1);
}

#[tokio::test]
async fn a_client_vanishing_mid_copy_in_commits_nothing_and_the_next_client_gets_the_connection() {
    vanish_mid_copy_in(Messages::default().query("COPY items FROM STDIN")).await;
}

#[tokio::test]
async fn a_client_vanishing_mid_copy_in_started_by_bind_execute_sync_leaves_a_reusable_connection()
{
    // As libpq and tokio-postgres send it: the Sync after the Execute is
    // ignored by the server while it is in COPY.
    vanish_mid_copy_in(
        Messages::default()
            .parse("", "COPY items FROM STDIN")
            .bind("", &[])
            .execute()
            .sync(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_keep_working_while_clients_hop_across_two_server_connections() {
    const CLIENTS: i32 = 8;
    const QUERIES: i32 = 40;
    let pg = server().await;
    let proxy = proxy(&pg, "transaction", 2, "");

    // Deterministic hop first: prepared on one server connection, then run
    // while the other client holds that one.
    let client = connect(&proxy).await;
    let shared = client
        .prepare("SELECT $1::int * 2, pg_backend_pid()")
        .await
        .unwrap();
    let row = client.query_one(&shared, &[&21]).await.unwrap();
    let (doubled, first_pid): (i32, i32) = (row.get(0), row.get(1));
    assert_eq!(doubled, 42);
    let holder = proxy.hold_server_with_pid(MD5_USER, first_pid).await;
    let row = client.query_one(&shared, &[&50]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 100);
    assert_ne!(row.get::<_, i32>(1), first_pid, "the client did not hop");
    holder.batch_execute("COMMIT").await.unwrap();

    // Then many clients, the same statement and one of their own each.
    let mut tasks = Vec::new();
    for client_id in 0..CLIENTS {
        let client = connect(&proxy).await;
        tasks.push(tokio::spawn(async move {
            let shared = client
                .prepare("SELECT $1::int * 2, pg_backend_pid()")
                .await
                .unwrap();
            let own = client
                .prepare(&format!("SELECT $1::text || ' from client {client_id}'"))
                .await
                .unwrap();
            let mut pids = BTreeSet::new();
            for n in 0..QUERIES {
                let row = client.query_one(&shared, &[&n]).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), n * 2, "client {client_id}");
                pids.insert(row.get::<_, i32>(1));
                let row = client.query_one(&own, &[&n.to_string()]).await.unwrap();
                assert_eq!(
                    row.get::<_, String>(0),
                    format!("{n} from client {client_id}")
                );
            }
            pids.len()
        }));
    }
    let mut hopped = 0;
    for task in tasks {
        if task.await.expect("a client failed") > 1 {
            hopped += 1;
        }
    }
    println!("{hopped} of {CLIENTS} clients ran their statements on both server connections");
    assert_eq!(pg.connections_authorized(APP_DB, USER), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_with_its_statement_cache_gets_right_results_across_server_connections() {
    use sqlx::Connection;
    const CLIENTS: i32 = 6;
    const ROUNDS: i32 = 30;
    let pg = server().await;
    let proxy = proxy(&pg, "transaction", 2, "");
    let url = format!(
        "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{APP_DB}?sslmode=disable",
        proxy.port()
    );

    let mut tasks = Vec::new();
    for client_id in 0..CLIENTS {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("sqlx client {client_id} connecting: {e}"));
            for n in 0..ROUNDS {
                let tripled: i32 = sqlx::query_scalar("SELECT $1::int4 * 3")
                    .bind(n)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                assert_eq!(tripled, n * 3);
                let text: String = sqlx::query_scalar("SELECT $1::text || $2::text")
                    .bind(format!("client {client_id}"))
                    .bind(format!(" round {n}"))
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                assert_eq!(text, format!("client {client_id} round {n}"));
                let mut transaction = conn.begin().await.unwrap();
                sqlx::query("INSERT INTO items VALUES ($1)")
                    .bind(client_id * 1000 + n)
                    .execute(&mut *transaction)
                    .await
                    .unwrap();
                let mine: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM items WHERE n / 1000 = $1")
                        .bind(client_id)
                        .fetch_one(&mut *transaction)
                        .await
                        .unwrap();
                assert_eq!(mine, i64::from(n) + 1);
                transaction.commit().await.unwrap();
            }
            conn.close().await.unwrap();
        }));
    }
    for task in tasks {
        task.await.expect("an sqlx client failed");
    }
    assert_eq!(
        scalar(&superuser(&pg).await, "SELECT count(*) FROM items").await,
        (CLIENTS * ROUNDS).to_string()
    );
    assert!(pg.connections_authorized(APP_DB, USER) <= 2);
}

/// asyncpg (statement cache, explicit prepare) and psycopg 3 (every query
/// prepared server-side) clients at once; prints "ok" when all results are right.
const PYTHON_CLIENTS: &str = r#"
import asyncio, sys
import asyncpg, psycopg

DSN = f"postgresql://md5_user:md5_pass@127.0.0.1:{sys.argv[1]}/app?sslmode=disable"

async def asyncpg_client(n):
    conn = await asyncpg.connect(DSN)
    try:
        for i in range(30):
            assert await conn.fetchval("SELECT $1::int * 2", i) == i * 2
            text = await conn.fetchval("SELECT $1::text || $2::text", f"a{n}", f"-{i}")
            assert text == f"a{n}-{i}", text
            async with conn.transaction():
                await conn.execute("INSERT INTO items VALUES ($1)", n * 1000 + i)
                mine = await conn.fetchval(
                    "SELECT count(*) FROM items WHERE n / 1000 = $1", n)
                assert mine == i + 1, (n, i, mine)
            statement = await conn.prepare("SELECT $1::int + 1")
            assert await statement.fetchval(i) == i + 1
    finally:
        await conn.close()

def psycopg_client(n):
    with psycopg.connect(DSN, autocommit=True, prepare_threshold=0) as conn:
        for i in range(30):
            assert conn.execute("SELECT %s::int * 3", (i,)).fetchone()[0] == i * 3
            with conn.transaction():
                conn.execute("INSERT INTO items VALUES (%s)", (100000 + n * 1000 + i,))
                (mine,) = conn.execute(
                    "SELECT count(*) FROM items WHERE n / 1000 = %s", (100 + n,)).fetchone()
                assert mine == i + 1, (n, i, mine)

async def main():
    await asyncio.gather(
        *(asyncpg_client(n) for n in range(6)),
        *(asyncio.to_thread(psycopg_client, n) for n in range(4)),
    )
    print("ok")

asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_and_psycopg_with_server_side_prepared_statements_get_right_results() {
    let have_clients = Command::new("python3")
        .args(["-c", "import psycopg, asyncpg"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !have_clients {
        println!(
            "skipped: python3 with psycopg and asyncpg is not available \
             (pip install \"psycopg[binary]\" asyncpg)"
        );
        return;
    }
    let pg = server().await;
    let proxy = proxy(&pg, "transaction", 2, "");
    let port = proxy.port().to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", PYTHON_CLIENTS, &port])
            .output()
            .expect("running python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "python clients failed ({}):\n{stdout}\n{}\nchurnstile:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        proxy.stderr()
    );
    assert_eq!(
        scalar(&superuser(&pg).await, "SELECT count(*) FROM items").await,
        (6 * 30 + 4 * 30).to_string()
    );
    assert_eq!(pg.connections_authorized(APP_DB, USER), 2);
}

/// Runs pgbench with `args` and the password in the environment; returns
/// its stdout after checking it exited 0.
fn pgbench(args: &[&str]) -> String {
    let output = Command::new("pgbench")
        .args(args)
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("running pgbench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "pgbench {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn pgbench_runs_without_failures_in_simple_extended_and_prepared_modes() {
    let pg = server().await;
    let port = pg.port().to_string();
    pgbench(&[
        "-i",
        "-q",
        "-s",
        "1",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-U",
        USER,
        APP_DB,
    ]);
    let proxy = proxy(&pg, "transaction", 2, "");
    let proxy_port = proxy.port().to_string();
    for mode in ["simple", "extended", "prepared"] {
        // One thread per client: pgbench prepares synchronously, so a thread
        // serving two clients would wait on the pool for one while the other,
        // holding a server connection in its transaction, cannot go on.
        let stdout = pgbench(&[
            "-n",
            "-M",
            mode,
            "-c",
            "6",
            "-j",
            "6",
            "-t",
            "30",
            "-h",
            "127.0.0.1",
            "-p",
            &proxy_port,
            "-U",
            USER,
            APP_DB,
        ]);
        assert!(
            stdout.contains("number of transactions actually processed: 180/180"),
            "-M {mode}:\n{stdout}"
        );
        assert!(
            stdout.contains("number of failed transactions: 0 (0.000%)"),
            "-M {mode}:\n{stdout}"
        );
    }
    assert_eq!(
        scalar(
            &superuser(&pg).await,
            "SELECT count(*) FROM pgbench_history"
        )
        .await,
        "540"
    );
}

#[tokio::test]
async fn a_statement_on_a_dropped_table_gets_42p01_where_it_is_prepared_anew_and_the_session_continues()
 {
    let pg = server().await;
    let admin = superuser(&pg).await;
    admin
        .batch_execute(
            "CREATE TABLE t1 (n int); INSERT INTO t1 VALUES (7); GRANT ALL ON t1 TO md5_user",
        )
        .await
        .unwrap();
    let proxy = proxy(&pg, "transaction", 2, "");
    let client = connect(&proxy).await;
    let statement = client
        .prepare("SELECT n, pg_backend_pid() FROM t1")
        .await
        .unwrap();
    let row = client.query_one(&statement, &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
    let prepared_on = row.get::<_, i32>(1);

    // Next time the client lands on the other server connection, where
    // churnstile must prepare the statement first, and t1 is gone.
    let holder = proxy.hold_server_with_pid(MD5_USER, prepared_on).await;
    admin.batch_execute("DROP TABLE t1").await.unwrap();
    let error = client.query(&statement, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&error), "42P01", "{error}");
    assert_eq!(
        error.as_db_error().unwrap().message(),
        "relation \"t1\" does not exist"
    );
    assert_ne!(backend_pid(&client).await, prepared_on);
    assert_eq!(
        scalar(&client, "SELECT 'still working'").await,
        "still working"
    );
    let error = client.query(&statement, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&error), "42P01", "{error}");

    // Once the table is back, the statement works again, as it would directly.
    admin
        .batch_execute(
            "CREATE TABLE t1 (n int); INSERT INTO t1 VALUES (8); GRANT ALL ON t1 TO md5_user",
        )
        .await
        .unwrap();
    let row = client.query_one(&statement, &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 8);
    assert_ne!(row.get::<_, i32>(1), prepared_on);
    holder.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn five_statements_in_rotation_with_max_prepared_statements_2_all_give_right_results() {
    const ROUNDS: i32 = 20;
    let pg = server().await;
    let proxy = proxy(&pg, "transaction", 1, "max_prepared_statements = 2\n");
    let client = connect(&proxy).await;
    let other = connect(&proxy).await;
    let mut statements = Vec::new();
    for k in 0..5 {
        statements.push(
            client
                .prepare(&format!("SELECT $1::int + {k}00"))
                .await
                .unwrap(),
        );
    }
    let other_statement = other.prepare("SELECT $1::int - 1").await.unwrap();
    for round in 0..ROUNDS {
        for (k, statement) in statements.iter().enumerate() {
            let row = client.query_one(statement, &[&round]).await.unwrap();
            assert_eq!(
                row.get::<_, i32>(0),
                round + 100 * k as i32,
                "statement {k}"
            );
        }
        let row = other.query_one(&other_statement, &[&round]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), round - 1);
    }
    // tokio-postgres closed its statements; the server holds at most two.
    let on_server = scalar(
        &client,
        "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql",
    )
    .await;
    assert!(
        on_server == "1" || on_server == "2",
        "{on_server} prepared statements on the server connection"
    );
    assert!(
        !pg.log().contains("does not exist"),
        "the server log shows a missing statement"
    );
}

#[tokio::test]
async fn closing_a_statement_and_preparing_its_name_again_answers_as_a_direct_connection() {
    let pg = server().await;
    let script = || {
        Messages::default()
            .parse("s", "SELECT 1")
            .bind("s", &[])
            .execute()
            .sync()
            .close_statement("s")
            .sync()
            .parse("s", "SELECT 'two'")
            .describe_statement("s")
            .bind("s", &[])
            .execute()
            .close_statement("s")
            .close_statement("never_prepared")
            .sync()
            .bind("s", &[])
            .execute()
            .sync()
            .parse("s", "SELECT 1")
            .bind("s", &[])
            .execute()
            .close_statement("s")
            .sync()
    };
    let expected = direct_answer(&pg, script()).await;
    assert_eq!(
        expected
            .iter()
            .filter(|m| m.starts_with("CloseComplete"))
            .count(),
        4
    );
    let proxy = proxy(&pg, "transaction", 2, "");
    let interference = Interference::start(&proxy, 2).await;
    let mut client = RawClient::connect(proxy.port()).await;
    for round in 0..10 {
        assert_eq!(client.run(script()).await, expected, "round {round}");
    }
    interference.stop().await;
}

#[tokio::test]
async fn deallocate_by_name_and_deallocate_all_in_sql_answer_as_a_direct_connection() {
    let pg = server().await;
    let script = || {
        Messages::default()
            .parse("s1", "SELECT 1")
            .parse("Mixed Case", "SELECT 2")
            .sync()
            .query("DEALLOCATE s1")
            .bind("s1", &[])
            .execute()
            .sync()
            .bind("Mixed Case", &[])
            .execute()
            .sync()
            .query("DEALLOCATE PREPARE \"Mixed Case\"")
            .bind("Mixed Case", &[])
            .execute()
            .sync()
            .query("DEALLOCATE nope")
            .parse("s1", "SELECT 3")
            .parse("s2", "SELECT 4")
            .bind("s1", &[])
            .execute()
            .sync()
            .query("DEALLOCATE ALL")
            .bind("s1", &[])
            .execute()
            .sync()
            .bind("s2", &[])
            .execute()
            .sync()
            .parse("s2", "SELECT 5")
            .bind("s2", &[])
            .execute()
            .sync()
            .query("deallocate all")
    };
    let expected = direct_answer(&pg, script()).await;
    assert!(
        expected.contains(&"Error(ERROR 26000 prepared statement \"s1\" does not exist)".into()),
        "{expected:#?}"
    );
    let proxy = proxy(&pg, "transaction", 2, "");
    let interference = Interference::start(&proxy, 2).await;
    let mut client = RawClient::connect(proxy.port()).await;
    for round in 0..10 {
        assert_eq!(client.run(script()).await, expected, "round {round}");
    }
    interference.stop().await;
}

#[tokio::test]
async fn preparing_a_statement_name_twice_without_closing_it_fails_with_42p05_as_directly() {
    let pg = server().await;
    let script = || {
        Messages::default()
            .parse("twice", "SELECT 1")
            .sync()
            .parse("twice", "SELECT 2")
            .bind("twice", &[])
            .execute()
            .sync()
            .bind("twice", &[])
            .execute()
            .close_statement("twice")
            .sync()
    };
    let expected = direct_answer(&pg, script()).await;
    assert!(
        expected.contains(&"Error(ERROR 42P05 prepared statement \"twice\" already exists)".into()),
        "{expected:#?}"
    );
    let proxy = proxy(&pg, "transaction", 2, "");
    let mut client = RawClient::connect(proxy.port()).await;
    assert_eq!(client.run(script()).await, expected);
}

#[tokio::test]
async fn a_statement_name_whose_parse_failed_is_free_as_on_a_direct_connection() {
    let pg = server().await;
    let groups = || {
        [
            Messages::default().parse("bad", "SELEC 1").sync(),
            Messages::default().bind("bad", &[]).execute().sync(),
            Messages::default()
                .parse("bad", "SELECT 'fixed'")
                .bind("bad", &[])
                .execute()
                .close_statement("bad")
                .sync(),
        ]
    };
    let pipelined = || {
        let mut all = Messages::default();
        for group in groups() {
            all.out.extend_from_slice(&group.out);
            all.ready_owed += group.ready_owed;
        }
        all
    };
    let expected = direct_answer(&pg, pipelined()).await;
    assert!(
        expected.contains(&"Error(ERROR 26000 prepared statement \"bad\" does not exist)".into())
            && expected.contains(&"DataRow[fixed]".into()),
        "{expected:#?}"
    );
    let proxy = proxy(&pg, "transaction", 2, "");
    let mut client = RawClient::connect(proxy.port()).await;
    let mut one_at_a_time = Vec::new();
    for group in groups() {
        one_at_a_time.extend(client.run(group).await);
    }
    assert_eq!(one_at_a_time, expected, "one Sync group at a time");
    assert_eq!(client.run(pipelined()).await, expected, "pipelined");
}

#[tokio::test]
async fn discard_all_or_deallocate_all_then_prepare_at_once_answers_as_a_direct_connection() {
    let pg = server().await;
    let script = || {
        [
            Messages::default()
                .parse("a", "SELECT 1")
                .bind("a", &[])
                .execute()
                .sync(),
            Messages::default()
                .query("DISCARD ALL")
                .parse("a", "SELECT 1")
                .bind("a", &[])
                .execute()
                .sync(),
            Messages::default()
                .query("SELECT 2; DEALLOCATE ALL")
                .parse("a", "SELECT 1")
                .bind("a", &[])
                .execute()
                .sync(),
        ]
    };
    let mut direct = RawClient::connect(pg.port()).await;
    let mut expected = Vec::new();
    for messages in script() {
        expected.push(direct.run(messages).await);
    }
    let proxy = proxy(&pg, "transaction", 1, "");
    // Another client on the same server connection prepares the same query.
    let mut sharer = RawClient::connect(proxy.port()).await;
    sharer
        .run(Messages::default().parse("b", "SELECT 1").sync())
        .await;
    let mut client = RawClient::connect(proxy.port()).await;
    for (messages, expected) in script().into_iter().zip(&expected) {
        assert_eq!(&client.run(messages).await, expected);
    }
    assert_eq!(
        sharer
            .run(Messages::default().bind("b", &[]).execute().sync())
            .await,
        [
            "BindComplete",
            "DataRow[1]",
            "CommandComplete(SELECT 1)",
            "ReadyForQuery(I)"
        ]
    );
}

#[tokio::test]
async fn statement_mode_refuses_begin_with_0a000_and_the_session_continues() {
    let pg = server().await;
    let proxy = proxy(&pg, "statement", 1, "");
    let client = connect(&proxy).await;
    for begin in [
        "BEGIN",
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "begin; select 1",
    ] {
        let error = client.batch_execute(begin).await.unwrap_err();
        assert_eq!(sqlstate(&error), "0A000", "{begin}: {error}");
        assert!(
            error
                .as_db_error()
                .unwrap()
                .message()
                .starts_with("transaction blocks are not allowed with pool_mode = statement"),
            "{begin}: {error}"
        );
        assert_eq!(
            scalar(&client, "SELECT 'after refusal'").await,
            "after refusal"
        );
    }
    let error = client
        .query("BEGIN", &[])
        .await
        .expect_err("BEGIN through the extended protocol");
    assert_eq!(sqlstate(&error), "0A000", "{error}");
    client
        .execute("INSERT INTO items VALUES ($1)", &[&1])
        .await
        .unwrap();
    assert_eq!(scalar(&client, "SELECT count(*) FROM items").await, "1");
    assert_eq!(
        scalar(&client, "SELECT pg_current_xact_id_if_assigned() IS NULL").await,
        "t"
    );
}

#[tokio::test]
async fn statement_mode_lets_two_clients_take_turns_on_one_server_connection() {
    let pg = server().await;
    let proxy = proxy(&pg, "statement", 1, "query_wait_timeout = 3\n");
    let first = connect(&proxy).await;
    let second = connect(&proxy).await;
    let first_pid = backend_pid(&first).await;
    for n in 0..20 {
        // Each statement gives the connection back: the other client never waits.
        let started = Instant::now();
        first
            .execute("INSERT INTO items VALUES ($1)", &[&n])
            .await
            .unwrap();
        assert_eq!(backend_pid(&second).await, first_pid);
        assert_eq!(
            scalar(&second, "SELECT count(*) FROM items").await,
            (n + 1).to_string()
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    // Settings still follow the client between statements.
    first.batch_execute("SET work_mem = '7MB'").await.unwrap();
    assert_eq!(scalar(&second, "SHOW work_mem").await, "4MB");
    assert_eq!(scalar(&first, "SHOW work_mem").await, "7MB");
    assert_eq!(pg.connections_authorized(APP_DB, USER), 1);
}

//! Session state under transaction pooling: a client's settings follow it
//! from one server connection to the next (and only the ones a direct
//! connection would keep), what it is told through ParameterStatus stays
//! true, state that cannot move pins it to its server connection until it
//! is released (or is refused with `pin_policy = "reject"`), and nothing a
//! client leaves behind is ever seen by another.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::message::frontend;
use support::pg_client::{backend_pid, sqlstate};
use support::{APP_DB, MD5_USER, PG_SUPERUSER, PgServer, Proxy, pg_proxy_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification, SimpleQueryMessage};

const USER: &str = MD5_USER.name;
const PASSWORD: &str = MD5_USER.password;
/// Bound on any one answer from the proxy or the server.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// A server where md5_user may use the table `items`, the schema `private`
/// (holding a table `marker`) and the role `app_reader`, all created by the
/// superuser so md5_user logs in only through the proxy.
async fn server() -> PgServer {
    let pg = PgServer::start();
    pg.client(PG_SUPERUSER, APP_DB)
        .await
        .batch_execute(
            "CREATE TABLE items (n int); GRANT ALL ON items TO md5_user;
             CREATE SCHEMA private; GRANT ALL ON SCHEMA private TO PUBLIC;
             CREATE TABLE private.marker AS SELECT 'private' AS place;
             CREATE TABLE public.marker AS SELECT 'public' AS place;
             GRANT ALL ON private.marker, public.marker TO PUBLIC;
             CREATE ROLE app_reader NOLOGIN; GRANT app_reader TO md5_user;",
        )
        .await
        .expect("preparing the server");
    pg
}

/// churnstile in transaction mode with `pool_size` server connections.
fn proxy(pg: &PgServer, pool_size: usize, extra: &str) -> Proxy {
    Proxy::start(&pg_proxy_config(
        pg,
        &format!("[pool]\npool_mode = \"transaction\"\ndefault_pool_size = {pool_size}\n{extra}"),
    ))
}

async fn connect(proxy: &Proxy) -> Client {
    proxy.connect(USER, PASSWORD, APP_DB).await
}

/// The columns of the first row of a simple query, as text ("NULL" for NULL).
async fn row(client: &Client, sql: &str) -> Vec<String> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

async fn scalar(client: &Client, sql: &str) -> String {
    row(client, sql).await.remove(0)
}

/// The pids of both server connections of a pool of two.
async fn both_server_pids(proxy: &Proxy) -> [i32; 2] {
    let first = connect(proxy).await;
    let second = connect(proxy).await;
    first.batch_execute("BEGIN").await.unwrap();
    second.batch_execute("BEGIN").await.unwrap();
    let pids = [backend_pid(&first).await, backend_pid(&second).await];
    first.batch_execute("COMMIT").await.unwrap();
    second.batch_execute("COMMIT").await.unwrap();
    assert_ne!(pids[0], pids[1]);
    pids
}

/// Runs `sql` (one row) for `client` on the server connection `target` of
/// a pool of two whose connections are `pids`; the first column returned is
/// checked to be the backend pid and left out.
async fn row_on(
    proxy: &Proxy,
    pids: [i32; 2],
    target: i32,
    client: &Client,
    sql: &str,
) -> Vec<String> {
    let other = if pids[0] == target { pids[1] } else { pids[0] };
    let holder = proxy.hold_server_with_pid(MD5_USER, other).await;
    let mut values = row(client, sql).await;
    holder.batch_execute("COMMIT").await.unwrap();
    let pid = values.remove(0);
    assert_eq!(
        pid,
        target.to_string(),
        "{sql} ran on the wrong server connection"
    );
    values
}

/// Everything a session can carry, labelled, as one query.
const FINGERPRINT: [(&str, &str); 20] = [
    ("search_path", "current_setting('search_path')"),
    ("statement_timeout", "current_setting('statement_timeout')"),
    ("work_mem", "current_setting('work_mem')"),
    ("myapp.x", "coalesce(current_setting('myapp.x', true), '')"),
    ("DateStyle", "current_setting('DateStyle')"),
    ("TimeZone", "current_setting('TimeZone')"),
    ("application_name", "current_setting('application_name')"),
    ("lock_timeout", "current_setting('lock_timeout')"),
    (
        "default_transaction_isolation",
        "current_setting('default_transaction_isolation')",
    ),
    ("IntervalStyle", "current_setting('IntervalStyle')"),
    ("current_user", "current_user"),
    ("session_user", "session_user"),
    ("role", "current_setting('role')"),
    ("marker", "(SELECT place FROM marker)"),
    (
        "sql prepared statements",
        "(SELECT count(*) FROM pg_prepared_statements WHERE from_sql \
          OR name NOT LIKE 'churnstile\\_ps\\_%')",
    ),
    (
        "temp tables",
        "(SELECT count(*) FROM pg_class WHERE relpersistence = 't' \
          AND relnamespace = pg_my_temp_schema())",
    ),
    (
        "listen channels",
        "(SELECT count(*) FROM pg_listening_channels())",
    ),
    (
        "advisory locks",
        "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
          AND pid = pg_backend_pid())",
    ),
    ("cursors", "(SELECT count(*) FROM pg_cursors)"),
    (
        "session settings",
        "(SELECT coalesce(string_agg(name || '=' || setting, ',' ORDER BY name), '') \
          FROM pg_settings WHERE source = 'session')",
    ),
];

/// The client's session as [`FINGERPRINT`] sees it, and the backend pid.
async fn fingerprint(client: &Client) -> (BTreeMap<&'static str, String>, i32) {
    let columns: Vec<&str> = FINGERPRINT.iter().map(|(_, sql)| *sql).collect();
    let mut values = row(
        client,
        &format!("SELECT pg_backend_pid(), {}", columns.join(", ")),
    )
    .await;
    let pid = values.remove(0).parse().unwrap();
    let labelled = FINGERPRINT
        .iter()
        .map(|(label, _)| *label)
        .zip(values)
        .collect();
    (labelled, pid)
}

/// Ten kinds of settings, each away from its default.
const SETTINGS: &str = "SET search_path = private, public;
     SET statement_timeout = '42s';
     SET work_mem = '64MB';
     SET myapp.x = 'leaked';
     SET DateStyle = 'German';
     SET TimeZone = 'Asia/Tokyo';
     SET application_name = 'leaker';
     SELECT set_config('lock_timeout', '7s', false);
     SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE;
     SET IntervalStyle = 'iso_8601';
     SET ROLE app_reader;";

/// State that cannot move to another server connection.
const PINNED_STATE: &str = "LISTEN leak_channel;
     SELECT pg_advisory_lock(4242);
     CREATE TEMP TABLE leak_tmp (n int);
     DECLARE leak_cursor CURSOR WITH HOLD FOR SELECT 1;
     PREPARE leak_stmt AS SELECT 1;";

/// Checks that every fingerprint entry differs from `baseline` except
/// those named in `same`.
fn assert_all_changed(
    changed: &BTreeMap<&str, String>,
    baseline: &BTreeMap<&str, String>,
    same: &[&str],
) {
    for (label, value) in changed {
        if same.contains(label) {
            assert_eq!(value, &baseline[label], "{label}");
        } else {
            assert_ne!(value, &baseline[label], "{label} was not changed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_after_leakers_see_none_of_their_settings_or_session_state() {
    let pg = server().await;
    let (baseline, _) = fingerprint(&pg.client(USER, APP_DB).await).await;
    assert_eq!(baseline["search_path"], "\"$user\", public");
    assert_eq!(baseline["session settings"], "");
    let direct_logins = pg.connections_authorized(APP_DB, USER);
    let proxy = proxy(&pg, 2, "");
    let pids = both_server_pids(&proxy).await;

    // One leaker pins its server connection with everything that pins,
    // the other (on the other server connection) only changes settings;
    // a third leaves in the middle of a transaction.
    let pinned = connect(&proxy).await;
    pinned.batch_execute(PINNED_STATE).await.unwrap();
    let settings_only = connect(&proxy).await;
    settings_only.batch_execute(SETTINGS).await.unwrap();
    pinned.batch_execute(SETTINGS).await.unwrap();
    let protocol_statement = pinned.prepare("SELECT $1::int + 1").await.unwrap();
    let (pinned_view, pinned_pid) = fingerprint(&pinned).await;
    let (settings_view, settings_pid) = fingerprint(&settings_only).await;
    assert_eq!(
        BTreeSet::from([pinned_pid, settings_pid]),
        BTreeSet::from(pids),
        "the leakers are on different server connections"
    );
    assert_all_changed(&pinned_view, &baseline, &["session_user"]);
    assert_all_changed(
        &settings_view,
        &baseline,
        &[
            "session_user",
            "sql prepared statements",
            "temp tables",
            "listen channels",
            "advisory locks",
            "cursors",
        ],
    );
    drop(protocol_statement);
    drop(pinned);
    drop(settings_only);
    let in_transaction = connect(&proxy).await;
    in_transaction
        .batch_execute(&format!("BEGIN; {SETTINGS}"))
        .await
        .unwrap();
    drop(in_transaction);

    let mut seen_pids = BTreeSet::new();
    for client_number in 0..30 {
        let client = connect(&proxy).await;
        let (view, pid) = fingerprint(&client).await;
        assert_eq!(view, baseline, "sequential client {client_number} on {pid}");
        seen_pids.insert(pid);
        let error = client.batch_execute("EXECUTE leak_stmt").await.unwrap_err();
        assert_eq!(sqlstate(&error), "26000", "{error}");
        let error = client.batch_execute("FETCH leak_cursor").await.unwrap_err();
        assert_eq!(sqlstate(&error), "34000", "{error}");
    }
    for batch in 0..2 {
        let mut tasks = Vec::new();
        for client_number in 0..10 {
            let client = connect(&proxy).await;
            let baseline = baseline.clone();
            tasks.push(tokio::spawn(async move {
                let mut pids = BTreeSet::new();
                for round in 0..5 {
                    let (view, pid) = fingerprint(&client).await;
                    assert_eq!(
                        view, baseline,
                        "concurrent client {batch}/{client_number}, round {round}, on {pid}"
                    );
                    pids.insert(pid);
                }
                pids
            }));
        }
        for task in tasks {
            seen_pids.extend(task.await.expect("a following client saw leaked state"));
        }
    }
    assert_eq!(
        seen_pids,
        BTreeSet::from(pids),
        "both server connections were checked"
    );
    for (what, sql) in [
        (
            "advisory locks",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
        ),
        (
            "temp tables",
            "SELECT count(*) FROM pg_class WHERE relpersistence = 't'",
        ),
    ] {
        assert_eq!(pg.query_i64(sql).await, 0, "{what} left on the server");
    }
    assert_eq!(pg.connections_authorized(APP_DB, USER) - direct_logins, 2);
}

#[tokio::test]
async fn a_clients_settings_follow_it_to_the_other_server_connection() {
    let pg = server().await;
    let proxy = proxy(&pg, 2, "");
    let pids = both_server_pids(&proxy).await;
    let client = connect(&proxy).await;
    client
        .batch_execute(
            "SET search_path = private, public;
             SET statement_timeout = '1234ms';
             SET myapp.tenant = 'acme';
             SELECT set_config('lock_timeout', '2s', false);
             SET ROLE app_reader;",
        )
        .await
        .unwrap();
    // A custom setting once set exists on that server connection for good
    // (RESET leaves it empty), so empty and missing both mean "not set".
    let check = "SELECT pg_backend_pid(), (SELECT place FROM marker), \
         current_setting('statement_timeout'), \
         coalesce(current_setting('myapp.tenant', true), ''), \
         current_setting('lock_timeout'), current_user";
    for round in 0..3 {
        for target in pids {
            assert_eq!(
                row_on(&proxy, pids, target, &client, check).await,
                ["private", "1234ms", "acme", "2s", "app_reader"],
                "round {round} on {target}"
            );
        }
    }
    // Another client in between sees none of it, on either connection.
    let other = connect(&proxy).await;
    for target in pids {
        assert_eq!(
            row_on(&proxy, pids, target, &other, check).await,
            ["public", "0", "", "0", "md5_user"],
            "another client on {target}"
        );
    }
    assert_eq!(pg.connections_authorized(APP_DB, USER), 2);
}

#[tokio::test]
async fn reset_and_reset_all_are_honoured_on_every_server_connection() {
    let pg = server().await;
    let proxy = proxy(&pg, 2, "");
    let pids = both_server_pids(&proxy).await;
    let client = connect(&proxy).await;
    let check = "SELECT pg_backend_pid(), current_setting('search_path'), \
         current_setting('statement_timeout'), current_setting('work_mem'), \
         coalesce(current_setting('myapp.tenant', true), '')";
    client
        .batch_execute(
            "SET search_path = private, public; SET statement_timeout = '5s';
             SET work_mem = '8MB'; SET myapp.tenant = 'acme'",
        )
        .await
        .unwrap();
    for target in pids {
        assert_eq!(
            row_on(&proxy, pids, target, &client, check).await,
            ["private, public", "5s", "8MB", "acme"]
        );
    }
    client
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();
    for target in pids {
        assert_eq!(
            row_on(&proxy, pids, target, &client, check).await,
            ["private, public", "0", "8MB", "acme"]
        );
    }
    client.batch_execute("RESET ALL").await.unwrap();
    for target in pids {
        assert_eq!(
            row_on(&proxy, pids, target, &client, check).await,
            ["\"$user\", public", "0", "4MB", ""]
        );
    }
}

#[tokio::test]
async fn set_local_set_transaction_and_local_set_config_end_with_their_transaction() {
    let pg = server().await;
    let proxy = proxy(&pg, 2, "");
    let pids = both_server_pids(&proxy).await;
    let client = connect(&proxy).await;
    let inside = row(
        &client,
        "BEGIN; SET LOCAL work_mem = '77MB'; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;
         SELECT set_config('statement_timeout', '9s', true);
         SELECT current_setting('work_mem'), current_setting('transaction_isolation'),
                current_setting('statement_timeout');",
    )
    .await;
    assert_eq!(inside, ["9s"], "set_config returns the value it set");
    let inside = row(
        &client,
        "SELECT current_setting('work_mem'), current_setting('transaction_isolation'), \
         current_setting('statement_timeout')",
    )
    .await;
    assert_eq!(inside, ["77MB", "serializable", "9s"]);
    client.batch_execute("COMMIT").await.unwrap();
    let check = "SELECT pg_backend_pid(), current_setting('work_mem'), \
         current_setting('transaction_isolation'), current_setting('statement_timeout')";
    for target in pids {
        assert_eq!(
            row_on(&proxy, pids, target, &client, check).await,
            ["4MB", "read committed", "0"],
            "on {target}"
        );
    }
}

#[tokio::test]
async fn a_set_in_a_rolled_back_or_failed_transaction_is_not_replayed_but_a_committed_one_is() {
    let pg = server().await;
    let proxy = proxy(&pg, 2, "");
    let pids = both_server_pids(&proxy).await;
    let client = connect(&proxy).await;
    let check = "SELECT pg_backend_pid(), current_setting('work_mem'), \
         coalesce(current_setting('myapp.tenant', true), '')";
    client
        .batch_execute("BEGIN; SET work_mem = '66MB'; SET myapp.tenant = 'rolled back'; ROLLBACK")
        .await
        .unwrap();
    for target in pids {
        assert_eq!(
            row_on(&proxy, pids, target, &client, check).await,
            ["4MB", ""]
        );
    }
    client
        .batch_execute("BEGIN; SET work_mem = '22MB'; SET myapp.tenant = 'failed'")
        .await
        .unwrap();
    let error = client.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&error), "22012");
    client.batch_execute("ROLLBACK").await.unwrap();
    for target in pids {
        assert_eq!(
            row_on(&proxy, pids, target, &client, check).await,
            ["4MB", ""]
        );
    }
    client
        .batch_execute("BEGIN; SET work_mem = '33MB'; SET myapp.tenant = 'committed'; COMMIT")
        .await
        .unwrap();
    for target in pids {
        assert_eq!(
            row_on(&proxy, pids, target, &client, check).await,
            ["33MB", "committed"]
        );
    }
}

/// A client speaking the protocol by hand, to see every ParameterStatus.
struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    /// Values the client has been told, by parameter name.
    params: BTreeMap<String, String>,
}

impl RawClient {
    /// Logs in as md5_user (MD5) to `app` with `startup` parameters and
    /// reads to the first ReadyForQuery.
    async fn connect(port: u16, startup: &[(&str, &str)]) -> RawClient {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .expect("connecting");
        let mut client = RawClient {
            stream,
            buf: BytesMut::new(),
            params: BTreeMap::new(),
        };
        let mut out = BytesMut::new();
        let mut params = vec![("user", USER), ("database", APP_DB)];
        params.extend_from_slice(startup);
        frontend::startup_message(params, &mut out).unwrap();
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
                (b'Z', _) => return client,
                (b'E', body) => panic!("login refused: {body:?}"),
                _ => {}
            }
        }
    }

    /// Reads one message, noting ParameterStatus values.
    async fn read_message(&mut self) -> (u8, Bytes) {
        let (tag, body) = tokio::time::timeout(ANSWER_TIMEOUT, async {
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
        .unwrap_or_else(|_| panic!("no answer within {ANSWER_TIMEOUT:?}"));
        if tag == b'S' {
            let mut fields = body.split(|&b| b == 0);
            let name = String::from_utf8_lossy(fields.next().unwrap()).into_owned();
            let value = String::from_utf8_lossy(fields.next().unwrap()).into_owned();
            self.params.insert(name, value);
        }
        (tag, body)
    }

    /// Runs a simple query; returns the first row's columns, and the
    /// ParameterStatus messages that came with the answer.
    async fn query(&mut self, sql: &str) -> (Vec<String>, Vec<(String, String)>) {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
        let mut first_row = None;
        let mut reported = Vec::new();
        loop {
            match self.read_message().await {
                (b'D', mut body) if first_row.is_none() => {
                    let columns = body.get_i16();
                    first_row = Some(
                        (0..columns)
                            .map(|_| {
                                let len = body.get_i32() as usize;
                                String::from_utf8_lossy(&body.split_to(len)).into_owned()
                            })
                            .collect(),
                    );
                }
                (b'S', body) => {
                    let mut fields = body.split(|&b| b == 0);
                    let name = String::from_utf8_lossy(fields.next().unwrap()).into_owned();
                    let value = String::from_utf8_lossy(fields.next().unwrap()).into_owned();
                    reported.push((name, value));
                }
                (b'E', body) => panic!("{sql}: {}", String::from_utf8_lossy(&body)),
                (b'Z', _) => return (first_row.unwrap_or_default(), reported),
                _ => {}
            }
        }
    }

    /// Checks that what the client was told of the reported parameters is
    /// what the server connection it is on has; returns that backend's pid.
    async fn assert_told_the_truth(&mut self, context: &str) -> String {
        let (values, _) = self
            .query(
                "SELECT pg_backend_pid(), current_setting('application_name'), \
                 current_setting('TimeZone'), current_setting('DateStyle'), \
                 current_setting('IntervalStyle')",
            )
            .await;
        let told: Vec<String> = ["application_name", "TimeZone", "DateStyle", "IntervalStyle"]
            .iter()
            .map(|name| self.params.get(*name).cloned().unwrap_or_default())
            .collect();
        assert_eq!(
            told,
            values[1..],
            "{context}: told vs. server on {}",
            values[0]
        );
        values[0].clone()
    }
}

#[tokio::test]
async fn the_client_is_told_parameter_values_that_change_or_differ_between_server_connections() {
    let pg = server().await;
    let proxy = proxy(&pg, 2, "");
    let pids = both_server_pids(&proxy).await;
    let mut client = RawClient::connect(proxy.port(), &[("application_name", "raw_start")]).await;
    assert_eq!(client.params["application_name"], "raw_start");
    assert_eq!(
        client.params["DateStyle"],
        scalar(&pg.client(USER, APP_DB).await, "SHOW DateStyle").await
    );

    let (_, reported) = client.query("SET application_name = 'renamed'").await;
    assert_eq!(
        reported,
        [("application_name".to_owned(), "renamed".to_owned())]
    );

    // Another client leaves reported settings of its own on one server connection.
    let other = connect(&proxy).await;
    other
        .batch_execute(
            "SET application_name = 'other'; SET TimeZone = 'America/New_York';
             SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'postgres_verbose'",
        )
        .await
        .unwrap();
    drop(other);

    let mut seen = BTreeSet::new();
    for round in 0..3 {
        for target in pids {
            let other_pid = if target == pids[0] { pids[1] } else { pids[0] };
            let holder = proxy.hold_server_with_pid(MD5_USER, other_pid).await;
            seen.insert(
                client
                    .assert_told_the_truth(&format!("round {round}"))
                    .await,
            );
            holder.batch_execute("COMMIT").await.unwrap();
        }
    }
    assert_eq!(seen.len(), 2);

    let (_, reported) = client.query("SET TimeZone = 'Asia/Tokyo'").await;
    assert_eq!(reported, [("TimeZone".to_owned(), "Asia/Tokyo".to_owned())]);
    for target in pids {
        let other_pid = if target == pids[0] { pids[1] } else { pids[0] };
        let holder = proxy.hold_server_with_pid(MD5_USER, other_pid).await;
        client.assert_told_the_truth("after SET TimeZone").await;
        holder.batch_execute("COMMIT").await.unwrap();
    }
    assert_eq!(client.params["TimeZone"], "Asia/Tokyo");
    assert_eq!(client.params["application_name"], "renamed");

    // RESET returns to the startup value, and the client is told so.
    client.query("RESET application_name").await;
    for target in pids {
        let other_pid = if target == pids[0] { pids[1] } else { pids[0] };
        let holder = proxy.hold_server_with_pid(MD5_USER, other_pid).await;
        client.assert_told_the_truth("after RESET").await;
        holder.batch_execute("COMMIT").await.unwrap();
    }
    assert_eq!(client.params["application_name"], "raw_start");
}

#[tokio::test]
async fn reset_returns_a_startup_setting_to_its_startup_value_as_on_a_direct_connection() {
    let pg = server().await;
    let proxy = proxy(&pg, 2, "");
    let pids = both_server_pids(&proxy).await;
    let conninfo = format!(
        "{} application_name=from_startup options='-c work_mem=5MB -c myapp.tenant=startup'",
        proxy.connection_string(USER, PASSWORD, APP_DB)
    );
    let client = support::pg_client::connect(&conninfo).await.unwrap();
    let check = "SELECT pg_backend_pid(), current_setting('application_name'), \
         current_setting('work_mem'), current_setting('myapp.tenant', true)";
    for target in pids {
        assert_eq!(
            row_on(&proxy, pids, target, &client, check).await,
            ["from_startup", "5MB", "startup"]
        );
    }
    client
        .batch_execute("SET work_mem = '9MB'; SET application_name = 'changed'")
        .await
        .unwrap();
    client.batch_execute("RESET ALL").await.unwrap();
    for target in pids {
        assert_eq!(
            row_on(&proxy, pids, target, &client, check).await,
            ["from_startup", "5MB", "startup"],
            "after RESET ALL, on {target}"
        );
    }
}

/// Connects through the proxy, forwarding the connection's notifications.
async fn connect_listening(proxy: &Proxy) -> (Client, mpsc::UnboundedReceiver<Notification>) {
    let (client, mut connection) =
        tokio_postgres::connect(&proxy.connection_string(USER, PASSWORD, APP_DB), NoTls)
            .await
            .expect("connecting through churnstile");
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(notification) = message {
                let _ = sender.send(notification);
            }
        }
    });
    (client, receiver)
}

async fn next_notification(
    receiver: &mut mpsc::UnboundedReceiver<Notification>,
) -> (String, String) {
    let notification = tokio::time::timeout(ANSWER_TIMEOUT, receiver.recv())
        .await
        .expect("a notification within 20 s")
        .expect("the connection is open");
    (
        notification.channel().to_owned(),
        notification.payload().to_owned(),
    )
}

/// `pin` keeps a client on its server connection (checked by `check`, which
/// returns `expected`, in later transactions) until `release`; meanwhile a
/// client wanting the only server connection gets 53300.
async fn assert_pinned_until_released(pin: &str, check: &str, expected: &str, release: &str) {
    let pg = server().await;
    let proxy = proxy(&pg, 1, "query_wait_timeout = 1\n");
    let waiter = connect(&proxy).await;
    let later = connect(&proxy).await;
    let pinned = connect(&proxy).await;

    pinned.batch_execute(pin).await.unwrap();
    let pid = backend_pid(&pinned).await;
    for n in 0..3 {
        pinned
            .batch_execute(&format!("BEGIN; INSERT INTO items VALUES ({n}); COMMIT"))
            .await
            .unwrap();
        assert_eq!(scalar(&pinned, check).await, expected, "{pin}: {check}");
        assert_eq!(backend_pid(&pinned).await, pid, "{pin}: the client moved");
    }
    let started = Instant::now();
    let error = waiter.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&error), "53300", "{pin}: {error}");
    assert!(started.elapsed() >= Duration::from_secs(1));

    pinned.batch_execute(release).await.unwrap();
    assert_eq!(backend_pid(&later).await, pid, "{pin}: after {release}");
    assert_eq!(backend_pid(&pinned).await, pid);
    // No longer pinned: the two clients take turns without waiting.
    for _ in 0..3 {
        assert_eq!(scalar(&later, "SELECT count(*) FROM items").await, "3");
        assert_eq!(scalar(&pinned, "SELECT count(*) FROM items").await, "3");
    }
    assert_eq!(pg.connections_authorized(APP_DB, USER), 1);
}

#[tokio::test]
async fn listen_pins_the_client_until_unlisten_all() {
    assert_pinned_until_released(
        "LISTEN jobs",
        "SELECT string_agg(c, ',') FROM pg_listening_channels() c",
        "jobs",
        "UNLISTEN *",
    )
    .await;
}

#[tokio::test]
async fn a_session_advisory_lock_pins_the_client_until_unlock_all() {
    assert_pinned_until_released(
        "SELECT pg_advisory_lock(42)",
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
        "1",
        "SELECT pg_advisory_unlock_all()",
    )
    .await;
}

#[tokio::test]
async fn a_temp_table_pins_the_client_until_dropped() {
    assert_pinned_until_released(
        "CREATE TEMP TABLE scratch AS SELECT 1 AS n",
        "SELECT count(*) FROM scratch",
        "1",
        "DROP TABLE scratch",
    )
    .await;
}

#[tokio::test]
async fn a_with_hold_cursor_pins_the_client_until_closed() {
    assert_pinned_until_released(
        "DECLARE held CURSOR WITH HOLD FOR SELECT 1",
        "SELECT count(*) FROM pg_cursors WHERE name = 'held'",
        "1",
        "CLOSE held",
    )
    .await;
}

#[tokio::test]
async fn an_sql_prepare_pins_the_client_until_deallocated() {
    assert_pinned_until_released(
        "PREPARE answer AS SELECT 42",
        "EXECUTE answer",
        "42",
        "DEALLOCATE answer",
    )
    .await;
}

/// Sessions whose query on `pg_settings` (churnstile's session-state
/// check) waits for a lock.
const STATE_CHECK_WAITING: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE datname = 'app' AND wait_event_type = 'Lock' \
     AND query LIKE '%pg_catalog.pg_settings%'";

/// A superuser session holding pg_class locked in an open transaction, so
/// that churnstile's next session-state check waits on the server until
/// the returned client rolls back.
async fn hold_state_checks(pg: &PgServer) -> Client {
    let holder = pg.client(PG_SUPERUSER, APP_DB).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_class IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    holder
}

#[tokio::test]
async fn a_notification_arriving_while_churnstile_checks_session_state_reaches_the_listener() {
    let pg = server().await;
    let proxy = proxy(&pg, 1, "");
    let (listener, mut notifications) = connect_listening(&proxy).await;
    // After LISTEN, churnstile asks the server for the session's state. A
    // lock on pg_class holds that question on the server while another
    // session notifies; the notification arrives with its answer.
    // Connected first: logging in reads pg_class.
    let notifier = pg.client(PG_SUPERUSER, APP_DB).await;
    let superuser = hold_state_checks(&pg).await;
    listener.batch_execute("LISTEN jobs").await.unwrap();
    support::wait::eventually(
        "the session-state check waits for the lock",
        ANSWER_TIMEOUT,
        async || pg.query_i64(STATE_CHECK_WAITING).await == 1,
    )
    .await;
    notifier
        .batch_execute("NOTIFY jobs, 'during the check'")
        .await
        .unwrap();
    superuser.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        next_notification(&mut notifications).await,
        ("jobs".to_owned(), "during the check".to_owned())
    );
    assert_eq!(
        scalar(&listener, "SELECT 'still listening'").await,
        "still listening"
    );
}

#[tokio::test]
async fn listen_and_notify_work_end_to_end_for_the_pinned_client() {
    let pg = server().await;
    let proxy = proxy(&pg, 2, "");
    let (listener, mut notifications) = connect_listening(&proxy).await;
    let notifier = connect(&proxy).await;
    listener.batch_execute("LISTEN jobs").await.unwrap();

    notifier
        .batch_execute("NOTIFY jobs, 'first'")
        .await
        .unwrap();
    assert_eq!(
        next_notification(&mut notifications).await,
        ("jobs".to_owned(), "first".to_owned())
    );
    notifier
        .batch_execute("BEGIN; SELECT pg_notify('jobs', 'second'); COMMIT")
        .await
        .unwrap();
    assert_eq!(
        next_notification(&mut notifications).await,
        ("jobs".to_owned(), "second".to_owned())
    );
    // The listener's own transactions do not lose what arrives meanwhile.
    for n in 0..5 {
        listener
            .batch_execute(&format!("BEGIN; INSERT INTO items VALUES ({n}); COMMIT"))
            .await
            .unwrap();
        notifier
            .batch_execute(&format!("NOTIFY jobs, 'n{n}'"))
            .await
            .unwrap();
        assert_eq!(
            next_notification(&mut notifications).await,
            ("jobs".to_owned(), format!("n{n}"))
        );
    }

    listener.batch_execute("UNLISTEN *").await.unwrap();
    notifier
        .batch_execute("NOTIFY jobs, 'unheard'")
        .await
        .unwrap();
    // A round trip on the listener's connection: anything queued has arrived.
    assert_eq!(scalar(&listener, "SELECT 'after'").await, "after");
    assert!(
        notifications.try_recv().is_err(),
        "a notification arrived after UNLISTEN *"
    );
}

/// Pinning statements with what the refusal must say about each.
const PINNING_STATEMENTS: [(&str, &str); 6] = [
    ("LISTEN jobs", "LISTEN registers this server connection"),
    ("SELECT pg_advisory_lock(42)", "session-level advisory lock"),
    (
        "CREATE TEMP TABLE scratch (n int)",
        "temporary table without ON COMMIT DROP",
    ),
    (
        "DECLARE held CURSOR WITH HOLD FOR SELECT 1",
        "WITH HOLD cursor",
    ),
    ("PREPARE answer AS SELECT 42", "SQL-level PREPARE"),
    ("LOAD 'auto_explain'", "LOAD"),
];

/// Nothing pinning exists on the client's server connection.
async fn assert_no_pinning_state(client: &Client) {
    assert_eq!(
        row(
            client,
            "SELECT (SELECT count(*) FROM pg_listening_channels()), \
             (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
              AND pid = pg_backend_pid()), \
             (SELECT count(*) FROM pg_class WHERE relpersistence = 't' \
              AND relnamespace = pg_my_temp_schema()), \
             (SELECT count(*) FROM pg_cursors), \
             (SELECT count(*) FROM pg_prepared_statements WHERE from_sql)"
        )
        .await,
        ["0", "0", "0", "0", "0"]
    );
}

async fn assert_refused(error: &tokio_postgres::Error, statement: &str, reason: &str) {
    assert_eq!(sqlstate(error), "0A000", "{statement}: {error}");
    let message = error.as_db_error().unwrap().message();
    assert!(
        message.contains(statement) && message.contains(reason) && message.contains("pin_policy"),
        "{statement}: the refusal says {message:?}"
    );
}

#[tokio::test]
async fn pin_policy_reject_refuses_each_pinning_statement_with_0a000_and_the_session_continues() {
    let pg = server().await;
    let proxy = proxy(&pg, 1, "pin_policy = \"reject\"\nquery_wait_timeout = 2\n");
    let client = connect(&proxy).await;
    let other = connect(&proxy).await;
    for (statement, reason) in PINNING_STATEMENTS {
        let error = client.batch_execute(statement).await.unwrap_err();
        assert_refused(&error, statement, reason).await;
        assert_eq!(scalar(&client, "SELECT 'still here'").await, "still here");
        assert_no_pinning_state(&client).await;
        // Not pinned: the other client gets the only server connection.
        assert_eq!(scalar(&other, "SELECT 'other'").await, "other");
    }
    // Inside a transaction the refusal fails the transaction, as an error would.
    client.batch_execute("BEGIN").await.unwrap();
    let error = client.batch_execute("LISTEN jobs").await.unwrap_err();
    assert_refused(&error, "LISTEN jobs", "LISTEN").await;
    let error = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&error), "25P02");
    client.batch_execute("ROLLBACK").await.unwrap();
    // What ends with the transaction is allowed.
    client
        .batch_execute(
            "BEGIN; SELECT pg_advisory_xact_lock(42);
             CREATE TEMP TABLE scratch (n int) ON COMMIT DROP;
             DECLARE c CURSOR FOR SELECT 1; COMMIT",
        )
        .await
        .unwrap();
    assert_no_pinning_state(&client).await;
    assert_eq!(scalar(&other, "SELECT 'other again'").await, "other again");
}

#[tokio::test]
async fn pin_policy_reject_refuses_pinning_statements_sent_with_the_extended_protocol() {
    let pg = server().await;
    let proxy = proxy(&pg, 1, "pin_policy = \"reject\"\nquery_wait_timeout = 2\n");
    let client = connect(&proxy).await;
    let other = connect(&proxy).await;
    let error = client
        .query("SELECT pg_advisory_lock($1)", &[&42_i64])
        .await
        .unwrap_err();
    assert_refused(&error, "SELECT pg_advisory_lock($1)", "advisory lock").await;
    let error = client.prepare("LISTEN jobs").await.unwrap_err();
    assert_refused(&error, "LISTEN jobs", "LISTEN").await;
    assert_eq!(scalar(&client, "SELECT 'still here'").await, "still here");
    // In a transaction the refusal fails it, as a failed Parse would.
    client.batch_execute("BEGIN").await.unwrap();
    let error = client
        .query("SELECT pg_advisory_lock(7)", &[])
        .await
        .unwrap_err();
    assert_refused(&error, "SELECT pg_advisory_lock(7)", "advisory lock").await;
    let error = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&error), "25P02");
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_no_pinning_state(&client).await;
    assert_eq!(scalar(&other, "SELECT 'other'").await, "other");
}

#[tokio::test]
async fn pin_policy_reject_can_be_set_for_one_database() {
    let pg = server().await;
    let proxy = proxy(
        &pg,
        1,
        "query_wait_timeout = 2\n[databases.app]\npin_policy = \"reject\"\n",
    );
    let client = connect(&proxy).await;
    let error = client.batch_execute("LISTEN jobs").await.unwrap_err();
    assert_refused(&error, "LISTEN jobs", "LISTEN").await;
    assert_no_pinning_state(&client).await;
}

#[tokio::test]
async fn a_clients_short_statement_and_lock_timeouts_do_not_cut_churnstiles_own_queries() {
    let pg = server().await;
    let proxy = proxy(&pg, 1, "");
    let client = connect(&proxy).await;
    client
        .batch_execute("SET statement_timeout = '50ms'; SET lock_timeout = '40ms'")
        .await
        .unwrap();
    // After the next SET churnstile asks the server for the session state;
    // a lock on pg_class makes that take longer than the client's timeout.
    let admin = hold_state_checks(&pg).await;
    client.batch_execute("SET work_mem = '5MB'").await.unwrap();
    let waited_long = format!("{STATE_CHECK_WAITING} AND now() - query_start > interval '300 ms'");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg.query_i64(&waited_long).await != 1 {
        assert!(
            Instant::now() < deadline,
            "churnstile's session-state query did not wait for the lock: {}",
            proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    admin.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        row(
            &client,
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), \
             current_setting('work_mem')"
        )
        .await,
        ["50ms", "40ms", "5MB"]
    );
    assert_eq!(pg.connections_authorized(APP_DB, USER), 1);
}

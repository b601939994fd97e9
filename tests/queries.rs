//! What applications do through churnstile in session pooling mode: simple
//! and extended-protocol queries, prepared statements, COPY in both
//! directions, results far larger than the proxy's memory, psql and pgbench,
//! startup parameters (and the ParameterStatus values clients are told),
//! errors inside transactions, and clients that send malformed messages.

mod support;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;
use std::pin::pin;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};
use support::pg_client::{self, sqlstate};
use support::raw_pg::{self, RawConnection};
use support::wait::until_equal;
use support::{
    APP_DB, MD5_USER, PG_SUPERUSER, PgServer, Proxy, TRUST_USER, child, pg_proxy_config,
    trust_proxy_config,
};
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// Bound on anything a test waits for that should take well under a second.
const WAIT: Duration = Duration::from_secs(10);
/// Bound on psql and pgbench runs.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The values of the rows among simple-query messages, as text.
fn simple_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The row counts of the statements' CommandComplete messages.
fn command_counts(messages: &[SimpleQueryMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::CommandComplete(count) => Some(*count),
            _ => None,
        })
        .collect()
}

/// Runs a command (psql, pgbench) to completion within [`COMMAND_TIMEOUT`],
/// its output captured in files so a chatty child never blocks on a pipe.
/// Returns (success, stdout, stderr).
fn run_command(mut command: Command, scratch: &Path) -> (bool, String, String) {
    let stdout_path = scratch.join("stdout");
    let stderr_path = scratch.join("stderr");
    let create = |path: &Path| {
        File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()))
    };
    command
        .stdin(Stdio::null())
        .stdout(create(&stdout_path))
        .stderr(create(&stderr_path));
    let description = format!("{command:?}");
    let mut process =
        child::spawn_supervised(command).unwrap_or_else(|e| panic!("starting {description}: {e}"));
    let status = child::wait_exit(&mut process, COMMAND_TIMEOUT).unwrap_or_else(|| {
        child::stop(&mut process, support::Signal::KILL, WAIT);
        panic!("{description} still running after {COMMAND_TIMEOUT:?}")
    });
    let read = |path: &Path| fs::read_to_string(path).unwrap_or_default();
    (status.success(), read(&stdout_path), read(&stderr_path))
}

/// `psql` for the proxy at `host` (an IP or the socket directory), without
/// psqlrc or password prompts, unaligned and tuples only, stopping at the
/// first error.
fn psql(proxy: &Proxy, host: &str, user: &str, password: &str) -> Command {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host])
        .args(["-p", &proxy.port().to_string(), "-U", user, "-d", APP_DB])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS");
    command
}

/// The ParameterStatus values among `messages`, last one winning.
fn parameter_statuses(messages: &[raw_pg::Message]) -> BTreeMap<String, String> {
    messages
        .iter()
        .filter(|(tag, _)| *tag == b'S')
        .map(|(_, body)| {
            let mut parts = body.split(|&b| b == 0);
            let mut text = || String::from_utf8_lossy(parts.next().unwrap_or(b"")).into_owned();
            (text(), text())
        })
        .collect()
}

/// Logs in over raw TCP with `params` besides user and database; returns
/// the connection and every message up to ReadyForQuery or the error.
async fn raw_log_in(
    proxy: &Proxy,
    user: &str,
    params: &[(&str, &str)],
) -> (RawConnection, Vec<raw_pg::Message>) {
    let mut connection = RawConnection::connect(proxy.port()).await;
    let mut all = vec![("user", user), ("database", APP_DB)];
    all.extend_from_slice(params);
    connection.send(&raw_pg::startup(&all)).await;
    let messages = connection.read_until_ready_or_error().await;
    (connection, messages)
}

#[tokio::test]
async fn simple_query_runs_several_statements_and_returns_their_rows() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let client = proxy.connect_as(MD5_USER).await;

    let messages = client
        .simple_query(
            "CREATE TEMP TABLE fruit (id int, name text); \
             INSERT INTO fruit VALUES (1, 'apple'), (2, NULL), (3, 'cherry'); \
             SELECT id, name FROM fruit ORDER BY id",
        )
        .await
        .unwrap();

    assert_eq!(command_counts(&messages), [0, 3, 3]);
    let text = |value: &str| Some(value.to_owned());
    assert_eq!(
        simple_rows(&messages),
        [
            vec![text("1"), text("apple")],
            vec![text("2"), None],
            vec![text("3"), text("cherry")],
        ]
    );
}

#[tokio::test]
async fn extended_protocol_binds_parameters_and_reuses_prepared_statements() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let client = proxy.connect_as(MD5_USER).await;

    let row = client
        .query_one(
            "SELECT $1::int4 + 1, upper($2::text), $3::bytea, $4::text IS NULL",
            &[&41i32, &"mixed Case", &vec![0u8, 1, 255], &None::<String>],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, String>(1), "MIXED CASE");
    assert_eq!(row.get::<_, Vec<u8>>(2), [0u8, 1, 255]);
    assert!(row.get::<_, bool>(3));

    let sql = "SELECT n * $1::int8 FROM generate_series(1, 3) AS n ORDER BY n";
    let statement = client.prepare(sql).await.unwrap();
    for factor in [1i64, 10, -7] {
        let values: Vec<i64> = client
            .query(&statement, &[&factor])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(values, [factor, 2 * factor, 3 * factor]);
    }
    let prepared: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1",
            &[&sql],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(prepared, 1, "the prepared statement lives on the server");
    assert_eq!(
        pg.connections_authorized(APP_DB, MD5_USER.name),
        1,
        "the session kept one server connection"
    );
}

/// `COPY ... FROM STDIN` text for rows 1..=count: `n<TAB>row n`.
fn copy_rows(count: usize) -> Vec<String> {
    (1..=count).map(|n| format!("{n}\trow {n}\n")).collect()
}

#[tokio::test]
async fn copy_from_stdin_loads_ten_thousand_rows() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let client = proxy.connect_as(MD5_USER).await;
    client
        .batch_execute("CREATE TABLE loaded (n int, label text)")
        .await
        .unwrap();

    let sink = client
        .copy_in::<_, Bytes>("COPY loaded (n, label) FROM STDIN")
        .await
        .unwrap();
    let mut sink = pin!(sink);
    for chunk in copy_rows(10_000).chunks(500) {
        sink.send(Bytes::from(chunk.concat())).await.unwrap();
    }
    let copied = sink.as_mut().finish().await.unwrap();

    assert_eq!(copied, 10_000);
    let row = client
        .query_one(
            "SELECT count(*), sum(n), count(DISTINCT label) FROM loaded",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 10_000);
    assert_eq!(row.get::<_, i64>(1), 50_005_000);
    assert_eq!(row.get::<_, i64>(2), 10_000);
}

#[tokio::test]
async fn copy_to_stdout_returns_every_row_and_byte() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let client = proxy.connect_as(MD5_USER).await;
    client
        .batch_execute(
            "CREATE TABLE exported AS \
             SELECT n, 'row ' || n AS label FROM generate_series(1, 10000) AS n",
        )
        .await
        .unwrap();

    let stream = client
        .copy_out("COPY (SELECT n, label FROM exported ORDER BY n) TO STDOUT")
        .await
        .unwrap();
    let mut stream = pin!(stream);
    let mut received = Vec::new();
    while let Some(chunk) = stream.try_next().await.unwrap() {
        received.extend_from_slice(&chunk);
        assert!(received.len() < 1 << 20, "COPY sent more than expected");
    }

    let expected = copy_rows(10_000).concat();
    assert_eq!(received.len(), expected.len());
    assert_eq!(received.iter().filter(|&&b| b == b'\n').count(), 10_000);
    assert!(received == expected.as_bytes(), "COPY data differs");
    let after: i32 = client.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(after, 7, "the session works after COPY");
}

#[tokio::test]
async fn a_60_mb_result_streams_through_without_the_proxy_buffering_it() {
    const ROWS: usize = 60_000;
    const WIDTH: usize = 1_000;
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let client = proxy.connect_as(MD5_USER).await;

    let consume = async {
        let rows = client
            .query_raw(
                "SELECT repeat('x', 1000) FROM generate_series(1, 60000)",
                std::iter::empty::<i32>(),
            )
            .await
            .unwrap();
        let mut rows = pin!(rows);
        let (mut count, mut bytes) = (0usize, 0usize);
        while let Some(row) = rows.try_next().await.unwrap() {
            let value: &str = row.get(0);
            assert!(value.bytes().all(|b| b == b'x'));
            bytes += value.len();
            count += 1;
            assert!(count <= ROWS, "more rows than the query selects");
        }
        (count, bytes)
    };
    let (count, bytes) = tokio::time::timeout(Duration::from_secs(90), consume)
        .await
        .expect("streaming 60 MB took over 90 s");

    assert_eq!(count, ROWS);
    assert_eq!(bytes, ROWS * WIDTH);
    let peak_kb = proxy.rss_peak_kb();
    assert!(
        peak_kb < 40 * 1024,
        "churnstile's peak RSS reached {peak_kb} KiB while relaying a {} MB result",
        bytes / 1_000_000
    );
}

#[tokio::test]
async fn psql_works_over_the_unix_socket_and_over_tcp() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let scratch = tempfile::tempdir().unwrap();
    let socket_dir = proxy.socket_dir().display().to_string();

    let mut over_socket = psql(&proxy, &socket_dir, MD5_USER.name, MD5_USER.password);
    over_socket.args(["-c", "SELECT current_user, 6 * 7", "-c", "\\conninfo"]);
    let (ok, stdout, stderr) = run_command(over_socket, scratch.path());
    assert!(ok, "psql over the Unix socket failed: {stderr}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("md5_user|42"), "stdout:\n{stdout}");
    let expected_conninfo = format!(
        "You are connected to database \"app\" as user \"md5_user\" via socket in \"{socket_dir}\" at port \"{}\".",
        proxy.port()
    );
    assert_eq!(lines.next(), Some(expected_conninfo.as_str()));

    let mut over_tcp = psql(&proxy, "127.0.0.1", MD5_USER.name, MD5_USER.password);
    over_tcp.args([
        "-c",
        "CREATE TABLE greetings (word text)",
        "-c",
        "INSERT INTO greetings VALUES ('hello'), ('world')",
        "-c",
        "SELECT string_agg(word, ' ' ORDER BY word) FROM greetings",
    ]);
    let (ok, stdout, stderr) = run_command(over_tcp, scratch.path());
    assert!(ok, "psql over TCP failed: {stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["CREATE TABLE", "INSERT 0 2", "hello world"]
    );

    let mut wrong = psql(&proxy, "127.0.0.1", MD5_USER.name, "wrong");
    wrong.args(["-c", "SELECT 1"]);
    let (ok, _, stderr) = run_command(wrong, scratch.path());
    assert!(!ok, "psql logged in with a wrong password");
    assert!(
        stderr.contains("password authentication failed for user \"md5_user\""),
        "stderr:\n{stderr}"
    );
}

#[tokio::test]
async fn pgbench_select_only_run_completes_without_failed_transactions() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let scratch = tempfile::tempdir().unwrap();

    let mut init = Command::new("pgbench");
    init.args(["-i", "-q", "-s", "1", "-h", pg.host()]).args([
        "-p",
        &pg.port().to_string(),
        "-U",
        PG_SUPERUSER,
        APP_DB,
    ]);
    let (ok, _, stderr) = run_command(init, scratch.path());
    assert!(ok, "pgbench -i failed: {stderr}");
    let owner = pg.client(PG_SUPERUSER, APP_DB).await;
    owner
        .batch_execute(&format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}",
            MD5_USER.name
        ))
        .await
        .unwrap();

    let mut bench = Command::new("pgbench");
    bench
        .args(["-n", "-S", "-t", "50", "-c", "4", "-h", "127.0.0.1"])
        .args(["-p", &proxy.port().to_string(), "-U", MD5_USER.name, APP_DB])
        .env("PGPASSWORD", MD5_USER.password);
    let (ok, stdout, stderr) = run_command(bench, scratch.path());

    assert!(ok, "pgbench through churnstile failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("number of transactions actually processed: 200/200"),
        "stdout:\n{stdout}"
    );
    assert!(
        stdout.contains("number of failed transactions: 0 "),
        "stdout:\n{stdout}"
    );
    let upstream = pg.connections_authorized(APP_DB, MD5_USER.name);
    assert!(
        (1..=5).contains(&upstream),
        "4 pgbench clients (plus its setup connection) opened {upstream} server connections"
    );
}

#[tokio::test]
async fn application_name_and_options_from_the_connection_string_take_effect() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let mut config: tokio_postgres::Config = proxy
        .connection_string(MD5_USER.name, MD5_USER.password, APP_DB)
        .parse()
        .unwrap();
    config
        .application_name("orders-api")
        .options("-c search_path=foo -c statement_timeout=1234");

    let (client, connection) = tokio::time::timeout(WAIT, config.connect(NoTls))
        .await
        .expect("login through churnstile timed out")
        .unwrap();
    assert_eq!(connection.parameter("application_name"), Some("orders-api"));
    assert_eq!(connection.parameter("client_encoding"), Some("UTF8"));
    tokio::spawn(connection);

    let row = client
        .query_one(
            "SELECT current_setting('application_name'), current_setting('search_path'), \
                    current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "orders-api");
    assert_eq!(row.get::<_, String>(1), "foo");
    assert_eq!(row.get::<_, String>(2), "1234ms");
    let timed_out = client
        .simple_query("SELECT pg_sleep(5)")
        .await
        .expect_err("statement_timeout=1234 did not stop a 5 s query");
    assert_eq!(sqlstate(&timed_out), "57014");
}

#[tokio::test]
async fn psql_environment_settings_reach_the_session_and_its_encoding() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let scratch = tempfile::tempdir().unwrap();

    let mut command = psql(&proxy, "127.0.0.1", MD5_USER.name, MD5_USER.password);
    command
        .env("PGCLIENTENCODING", "LATIN1")
        .env("PGTZ", "Asia/Tokyo")
        .env("PGDATESTYLE", "SQL, DMY")
        .env("PGAPPNAME", "psql-report")
        .env("PGOPTIONS", "-c search_path=foo")
        .args(["-c", "\\encoding", "-c", "SHOW client_encoding"])
        .args(["-c", "SHOW TimeZone", "-c", "SHOW DateStyle"])
        .args(["-c", "SELECT current_setting('application_name')"])
        .args(["-c", "SHOW search_path", "-c", "SELECT DATE '2024-03-01'"]);
    let (ok, stdout, stderr) = run_command(command, scratch.path());

    assert!(ok, "psql failed: {stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "LATIN1",
            "LATIN1",
            "Asia/Tokyo",
            "SQL, DMY",
            "psql-report",
            "foo",
            "01/03/2024"
        ]
    );
}

/// What the server itself reports, by default, for `setting`.
async fn server_default(pg: &PgServer, setting: &str) -> String {
    let client = pg.client(PG_SUPERUSER, APP_DB).await;
    let rows = client
        .simple_query(&format!("SHOW {setting}"))
        .await
        .unwrap();
    simple_rows(&rows)[0][0].clone().unwrap()
}

/// Polls until the server shows `user`'s one backend idle after running a
/// query matching the LIKE `pattern`, i.e. churnstile has finished resetting it.
async fn await_idle_after(pg: &PgServer, user: &str, pattern: &str) {
    let admin = pg.client(PG_SUPERUSER, APP_DB).await;
    until_equal(
        &format!("{user}'s server connections idle after {pattern:?}"),
        WAIT,
        1,
        async || {
            admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE usename = $1 AND state = 'idle' AND query LIKE $2",
                    &[&user, &pattern],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        },
    )
    .await;
}

#[tokio::test]
async fn parameter_status_reports_the_clients_settings_and_defaults_to_the_next_client() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&trust_proxy_config(&pg, "[pool]\ndefault_pool_size = 1\n"));
    let defaults = [
        ("TimeZone", server_default(&pg, "TimeZone").await),
        ("DateStyle", server_default(&pg, "DateStyle").await),
        ("client_encoding", "UTF8".to_owned()),
        ("application_name", String::new()),
    ];
    let chosen = [
        ("TimeZone", "Asia/Tokyo"),
        ("DateStyle", "SQL, DMY"),
        ("client_encoding", "LATIN1"),
        ("application_name", "raw-client"),
    ];
    for ((name, default), (_, value)) in defaults.iter().zip(chosen) {
        assert_ne!(default, value, "{name} must differ from its default");
    }

    let (mut first, messages) = raw_log_in(&proxy, TRUST_USER.name, &chosen).await;
    assert_eq!(messages.last().map(|m| m.0), Some(b'Z'), "{messages:?}");
    let reported = parameter_statuses(&messages);
    for (name, value) in chosen {
        assert_eq!(
            reported.get(name).map(String::as_str),
            Some(value),
            "{name}"
        );
    }
    assert_eq!(
        reported.get("server_encoding").map(String::as_str),
        Some("UTF8")
    );
    assert!(
        messages
            .iter()
            .any(|(tag, body)| *tag == b'K' && body.len() == 8),
        "no BackendKeyData: {messages:?}"
    );
    first.send(&raw_pg::terminate()).await;
    assert!(first.closed_within(WAIT).await);
    // The reset ends by restoring the departed client's startup settings
    // (in the same write as DISCARD ALL), so a returning client needs no
    // round trip; the next client's different settings are then moved away.
    await_idle_after(&pg, TRUST_USER.name, "SELECT pg_catalog.set_config(%").await;

    let (_second, messages) = raw_log_in(&proxy, TRUST_USER.name, &[]).await;
    assert_eq!(messages.last().map(|m| m.0), Some(b'Z'), "{messages:?}");
    let reported = parameter_statuses(&messages);
    for (name, default) in &defaults {
        assert_eq!(reported.get(*name), Some(default), "{name}");
    }
    assert_eq!(
        pg.connections_authorized(APP_DB, TRUST_USER.name),
        1,
        "the second client reused the first one's server connection"
    );
}

#[tokio::test]
async fn an_invalid_startup_setting_is_fatal_with_postgres_sqlstate() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&trust_proxy_config(&pg, ""));

    let (mut raw, messages) = raw_log_in(&proxy, TRUST_USER.name, &[("TimeZone", "bogus")]).await;
    let error = messages.last().unwrap();
    assert_eq!(error.0, b'E', "{messages:?}");
    let fields = raw_pg::error_fields(error);
    assert_eq!(fields.get(&'S').map(String::as_str), Some("FATAL"));
    assert_eq!(fields.get(&'C').map(String::as_str), Some("22023"));
    assert!(fields[&'M'].contains("bogus"), "{fields:?}");
    assert!(
        !messages.iter().any(|(tag, _)| *tag == b'Z'),
        "{messages:?}"
    );
    assert!(raw.closed_within(WAIT).await);

    let mut config: tokio_postgres::Config = proxy
        .connection_string(MD5_USER.name, "", APP_DB)
        .parse()
        .unwrap();
    config.options("-c DateStyle=sideways");
    let error = tokio::time::timeout(WAIT, config.connect(NoTls))
        .await
        .expect("login through churnstile timed out")
        .err()
        .expect("a bogus DateStyle was accepted");
    assert_eq!(sqlstate(&error), "22023");

    let client = proxy.connect(MD5_USER.name, "", APP_DB).await;
    let zone = simple_rows(&client.simple_query("SHOW TimeZone").await.unwrap());
    assert_eq!(
        zone[0][0],
        Some(server_default(&pg, "TimeZone").await),
        "a later client gets a normal session"
    );
}

#[tokio::test]
async fn after_an_error_the_transaction_refuses_queries_until_rollback() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let client = proxy.connect_as(MD5_USER).await;
    client
        .batch_execute("CREATE TABLE ledger (n int)")
        .await
        .unwrap();

    client
        .batch_execute("BEGIN; INSERT INTO ledger VALUES (1)")
        .await
        .unwrap();
    let division = client.query("SELECT 1 / 0", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&division), "22012");
    let aborted = client.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&aborted), "25P02");
    let aborted = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&aborted), "25P02");
    client.batch_execute("ROLLBACK").await.unwrap();

    assert_eq!(
        pg_client::query_i64(&client, "SELECT count(*) FROM ledger").await,
        0,
        "the failed transaction's insert was rolled back"
    );
    client
        .batch_execute("INSERT INTO ledger VALUES (2)")
        .await
        .unwrap();
    assert_eq!(
        pg_client::query_i64(&client, "SELECT sum(n) FROM ledger").await,
        2
    );
}

/// VmPeak (peak virtual memory) of a process, in KiB: a large allocation
/// shows here even if its pages are never touched.
fn virtual_peak_kb(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmPeak:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmPeak for PID {pid}"))
}

#[tokio::test]
async fn a_malformed_message_length_gets_fatal_08p01_and_others_keep_working() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&trust_proxy_config(&pg, ""));
    let bystander = proxy.connect(MD5_USER.name, "", APP_DB).await;
    let virtual_before = virtual_peak_kb(proxy.pid());

    for declared in [2u32, 0x7fff_ffff] {
        let (mut raw, messages) = raw_log_in(&proxy, TRUST_USER.name, &[]).await;
        assert_eq!(messages.last().map(|m| m.0), Some(b'Z'), "{messages:?}");
        let mut query = vec![b'Q'];
        query.extend_from_slice(&declared.to_be_bytes());
        query.extend_from_slice(b"SELECT 1\0");
        raw.send(&query).await;

        let error = raw
            .read_message()
            .await
            .unwrap_or_else(|| panic!("length {declared}: closed without an error"));
        assert_eq!(error.0, b'E', "length {declared}");
        let fields = raw_pg::error_fields(&error);
        assert_eq!(fields.get(&'S').map(String::as_str), Some("FATAL"));
        assert_eq!(
            fields.get(&'C').map(String::as_str),
            Some("08P01"),
            "length {declared}: {fields:?}"
        );
        assert!(
            raw.closed_within(WAIT).await,
            "length {declared}: connection left open"
        );

        let answer: i32 = bystander
            .query_one("SELECT $1::int4 * 2", &[&21i32])
            .await
            .unwrap()
            .get(0);
        assert_eq!(answer, 42, "after length {declared}");
        let newcomer = proxy.connect(MD5_USER.name, "", APP_DB).await;
        newcomer.simple_query("SELECT 1").await.unwrap();
    }

    let virtual_growth_kb = virtual_peak_kb(proxy.pid()).saturating_sub(virtual_before);
    assert!(
        virtual_growth_kb < 512 * 1024,
        "churnstile's virtual memory grew by {virtual_growth_kb} KiB after a 2 GiB length"
    );
    let peak_kb = proxy.rss_peak_kb();
    assert!(peak_kb < 40 * 1024, "peak RSS {peak_kb} KiB");
}

#[tokio::test]
async fn a_client_connected_over_the_unix_socket_runs_queries() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let client =
        pg_client::connect(&proxy.unix_connection_string(MD5_USER.name, MD5_USER.password, APP_DB))
            .await
            .unwrap();
    let row = client
        .query_one("SELECT current_user::text, $1::text", &[&"via socket"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), MD5_USER.name);
    assert_eq!(row.get::<_, String>(1), "via socket");
}

//! Log output as log shippers read it: with `log_format = "json"` every
//! line churnstile writes to stderr is one JSON object with a timestamp,
//! level, target, and the message with its fields under `fields`; an
//! upstream that is down is reported once, not once per client.

mod support;

use std::time::Duration;

use support::{APP_DB, MD5_USER, PgServer, Proxy, free_port, pg_proxy_config};

#[tokio::test]
async fn json_log_format_writes_one_object_per_line() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, "[general]\nlog_format = \"json\"\n"));
    let refused = proxy.try_connect(MD5_USER.name, "wrong", APP_DB).await;
    assert!(refused.is_err());
    let stderr = proxy.stderr();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let ready = lines
        .iter()
        .find(|line| line["fields"]["message"] == "churnstile is accepting clients")
        .unwrap_or_else(|| panic!("no start-up line in:\n{stderr}"));
    assert_eq!(ready["level"], "INFO");
    assert!(ready["timestamp"].is_string());
    assert_eq!(ready["fields"]["databases"], 1);
    let refusal = lines
        .iter()
        .find(|line| line["fields"]["message"] == "client login refused")
        .unwrap_or_else(|| panic!("no refused login (debug) in:\n{stderr}"));
    assert_eq!(refusal["fields"]["code"], "28P01");
    assert_eq!(
        refusal["fields"]["reason"],
        "password authentication failed for user \"md5_user\""
    );
}

#[tokio::test]
async fn repeated_warnings_are_written_once_per_interval() {
    const CLIENTS: usize = 4;
    let pg = PgServer::start();
    let down = free_port();
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        &format!(
            "[pool]\nquery_wait_timeout = 0.2\n\
             [databases.down]\nhost = \"127.0.0.1\"\nport = {down}\ndbname = \"app\"\n"
        ),
    ));
    for _ in 0..CLIENTS {
        let refused = proxy
            .try_connect(MD5_USER.name, MD5_USER.password, "down")
            .await;
        assert!(refused.is_err(), "nothing listens on port {down}");
    }
    let stderr = proxy.stderr();
    let written = |message: &str| stderr.lines().filter(|line| line.contains(message)).count();
    assert_eq!(written("server connection failed"), 1, "{stderr}");
    assert_eq!(written("client got no server connection"), 1, "{stderr}");
}

/// The JSON lines of `stderr` whose message is `message`.
fn json_lines(stderr: &str, message: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|text| text.starts_with(message))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_disconnections_and_stats_are_logged_as_pgbouncer_logs_them() {
    let pg = PgServer::start();
    let config = "[general]\nlog_format = \"json\"\nstats_period = 1\n";
    let proxy = Proxy::start(&pg_proxy_config(&pg, config));
    let client = proxy.connect_as(MD5_USER).await;
    assert_eq!(support::pg_client::scalar(&client, "SELECT 1").await, "1");
    drop(client);

    let logged = async |message: &str| {
        support::wait::eventually(message, Duration::from_secs(5), async || {
            !json_lines(&proxy.stderr(), message).is_empty()
        })
        .await;
        json_lines(&proxy.stderr(), message).remove(0)
    };
    let connected = logged("client connected").await;
    assert_eq!(connected["fields"]["db"], APP_DB);
    assert_eq!(connected["fields"]["user"], MD5_USER.name);
    assert_eq!(connected["fields"]["protocol"], "postgres");
    assert_eq!(connected["fields"]["addr"], "127.0.0.1");
    let disconnected = logged("client disconnected").await;
    assert_eq!(disconnected["fields"]["reason"], "client sent Terminate");
    assert_eq!(disconnected["fields"]["id"], connected["fields"]["id"]);
    assert!(disconnected["fields"]["duration"].is_string());
    let stats = logged("stats: ").await;
    assert_eq!(stats["fields"]["db"], APP_DB);
    let line = stats["fields"]["message"].as_str().unwrap();
    let shape = line
        .split(", ")
        .map(|part| {
            part.split(' ')
                .filter(|w| w.parse::<u64>().is_err())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>();
    assert_eq!(
        shape,
        [
            "stats: xacts/s",
            "queries/s",
            "in B/s",
            "out B/s",
            "xact us",
            "wait us"
        ],
        "{line}"
    );
}

#[tokio::test]
async fn log_connections_can_be_turned_off() {
    let pg = PgServer::start();
    let config = "[general]\nlog_connections = false\n";
    let proxy = Proxy::start(&pg_proxy_config(&pg, config));
    let client = proxy.connect_as(MD5_USER).await;
    assert_eq!(support::pg_client::scalar(&client, "SELECT 1").await, "1");
    drop(client);
    support::wait::eventually("the disconnect line", Duration::from_secs(5), async || {
        proxy.stderr().contains("client disconnected")
    })
    .await;
    let stderr = proxy.stderr();
    assert!(!stderr.contains("client connected"), "{stderr}");
}

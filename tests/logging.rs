//! Log output as log shippers read it: with `log_format = "json"` every
//! line churnstile writes to stderr is one JSON object with a timestamp,
//! level, target, and the message with its fields under `fields`; an
//! upstream that is down is reported once, not once per client.

mod support;

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

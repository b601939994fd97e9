//! Log output as log shippers read it: with `log_format = "json"` every
//! line churnstile writes to stderr is one JSON object with a timestamp,
//! level, target, and the message with its fields under `fields`.

mod support;

use support::{APP_DB, MD5_USER, PgServer, Proxy, pg_proxy_config};

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

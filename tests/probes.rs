//! The probes on the metrics listener, as Kubernetes uses them:
//! `/healthz` answers 200 while the process runs; `/readyz` answers 200
//! while churnstile accepts clients and its database answers, and 503 with
//! the reason when the upstream refuses connects or a shutdown drains.

mod support;

use std::net::SocketAddr;

use support::metrics_endpoint::{http_get, proxy_with_metrics};
use support::pg_client;
use support::shutdown::{PROMPTLY, connect_watched, wait_refused};
use support::wait::poll_until;
use support::{APP_DB, MD5_USER, PgServer, Signal};

const OK: &str = "HTTP/1.1 200 OK";
const UNAVAILABLE: &str = "HTTP/1.1 503 Service Unavailable";

async fn probe(metrics: SocketAddr, path: &str) -> (String, String) {
    http_get(metrics, path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_upstream_and_healthz_the_process() {
    let mut pg = PgServer::start();
    let (proxy, metrics) = proxy_with_metrics(&pg, "");
    assert_eq!(
        probe(metrics, "/healthz").await,
        (OK.to_owned(), "ok\n".to_owned())
    );
    assert_eq!(
        probe(metrics, "/readyz").await,
        (OK.to_owned(), "ready\n".to_owned())
    );

    pg.stop();
    // A client waits for a server connection while the pool retries.
    let connection_string = proxy.connection_string(MD5_USER.name, MD5_USER.password, APP_DB);
    let waiting = tokio::spawn(async move {
        tokio::time::timeout(PROMPTLY, pg_client::connect(&connection_string)).await
    });
    let reason = poll_until(
        "/readyz failing with the upstream down",
        PROMPTLY,
        async || match probe(metrics, "/readyz").await {
            (status, body) if status == UNAVAILABLE => Ok(body),
            seen => Err(seen),
        },
    )
    .await;
    assert!(
        reason.starts_with("database \"app\" unreachable: ") && reason.ends_with("s ago\n"),
        "{reason:?}"
    );
    assert_eq!(reason.lines().count(), 1, "{reason:?}");
    assert_eq!(probe(metrics, "/healthz").await.0, OK);

    waiting.abort();
    pg.restart();
    let client = proxy.connect_as(MD5_USER).await;
    client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(
        probe(metrics, "/readyz").await,
        (OK.to_owned(), "ready\n".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_draining_and_healthz_still_answers() {
    let pg = PgServer::start();
    let (mut proxy, metrics) = proxy_with_metrics(&pg, "");
    let (_client, _connection) = connect_watched(&proxy).await;
    assert_eq!(probe(metrics, "/readyz").await.0, OK);

    proxy.send_signal(Signal::TERM);
    wait_refused(proxy.port()).await;
    assert_eq!(
        probe(metrics, "/readyz").await,
        (
            UNAVAILABLE.to_owned(),
            "draining: shutting down, new clients are refused\n".to_owned()
        )
    );
    assert_eq!(
        probe(metrics, "/healthz").await,
        (OK.to_owned(), "ok\n".to_owned())
    );
}

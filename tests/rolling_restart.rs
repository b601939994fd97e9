//! A rolling restart over TCP with `so_reuseport = true`: a second
//! churnstile starts on the same port while the first still serves, the
//! first is sent SIGTERM and exits once its client leaves, and clients
//! keep connecting to the port throughout.

mod support;

use support::pg_client::scalar;
use support::shutdown::{PROMPTLY, wait_exit};
use support::wait::eventually;
use support::{MD5_USER, PgServer, Proxy, Signal, free_port, pg_proxy_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_churnstile_shares_the_port_and_takes_over_after_sigterm() {
    let pg = PgServer::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("churnstile.toml");
    let config = pg_proxy_config(&pg, "[general]\nso_reuseport = true\n")
        .replace("{port}", &port.to_string())
        .replace("{socket_dir}", "");
    std::fs::write(&path, config).unwrap();
    let args = ["--config", path.to_str().unwrap()];
    let mut old = Proxy::start_args(&args, port);
    let client = old.connect_as(MD5_USER).await;
    assert_eq!(scalar(&client, "SELECT 1").await, "1");

    let new = Proxy::start_args(&args, port);
    eventually("the second churnstile listens", PROMPTLY, async || {
        new.stderr().contains("churnstile is accepting clients")
    })
    .await;
    old.send_signal(Signal::TERM);
    for n in 0..20 {
        let churn = new.connect_as(MD5_USER).await;
        assert_eq!(scalar(&churn, &format!("SELECT {n}")).await, n.to_string());
    }
    assert_eq!(
        scalar(&client, "SELECT 'old still serves'").await,
        "old still serves"
    );
    drop(client);
    assert_eq!(wait_exit(&mut old, PROMPTLY), Some(0), "{}", old.stderr());
    for n in 0..20 {
        let churn = new.connect_as(MD5_USER).await;
        assert_eq!(scalar(&churn, &format!("SELECT {n}")).await, n.to_string());
    }
    assert!(new.stderr().contains("client connected"));
}

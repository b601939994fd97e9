//! A client that breaks the protocol costs its server connection no more
//! than the answers to what it really sent: messages refused before a
//! server is attached take none, a query followed by garbage in the same
//! write is answered and the connection goes back at once, and a COPY FROM
//! STDIN the client abandons is ended with CopyFail. So abusive clients
//! looping on a small pool do not slow a well-behaved one down.

mod support;

use std::time::{Duration, Instant};

use support::pg_client::query_i64;
use support::raw_pg::{self, RawConnection};
use support::{APP_DB, PG_SUPERUSER, PgServer, Proxy, TRUST_USER, trust_proxy_config};

/// The inputs of issue 18 (item 4), each sent in one write after logging in.
fn abusive_inputs() -> [Vec<u8>; 3] {
    let mut query_then_garbage = raw_pg::query("SELECT 1");
    query_then_garbage.push(0xff);
    let copy_then_eof = raw_pg::query("COPY hygiene FROM STDIN");
    let garbage_first = vec![b'!', 0, 0, 0, 4];
    [query_then_garbage, copy_then_eof, garbage_first]
}

/// Logs in as trust_user, sends `input` and leaves (without Terminate).
async fn abuse(port: u16, input: &[u8]) {
    let mut connection = RawConnection::connect(port).await;
    connection.send(&raw_pg::app_startup(TRUST_USER.name)).await;
    connection.wait_ready().await;
    connection.send(input).await;
    // Garbage earns an 08P01 and a close; the COPY is simply abandoned.
    if input.ends_with(&[0xff]) || input.starts_with(b"!") {
        assert!(connection.closed_within(Duration::from_secs(5)).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_behaved_client_stays_fast_while_three_abusive_clients_loop() {
    let pg = PgServer::start();
    let setup = pg.client(PG_SUPERUSER, APP_DB).await;
    setup
        .batch_execute(&format!(
            "CREATE TABLE hygiene (x int); GRANT ALL ON hygiene TO {}",
            TRUST_USER.name
        ))
        .await
        .unwrap();
    let proxy = Proxy::start(&trust_proxy_config(
        &pg,
        "[pool]\npool_mode = \"transaction\"\ndefault_pool_size = 5\n",
    ));
    let port = proxy.port();
    let abusers: Vec<_> = abusive_inputs()
        .into_iter()
        .map(|input| {
            tokio::spawn(async move {
                for _ in 0..40 {
                    abuse(port, &input).await;
                }
            })
        })
        .collect();

    let client = proxy.connect(TRUST_USER.name, "", APP_DB).await;
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        assert_eq!(query_i64(&client, "SELECT 1::int8").await, 1);
        latencies.push(started.elapsed());
    }
    for abuser in abusers {
        abuser.await.unwrap();
    }
    latencies.sort();
    let (median, worst) = (latencies[50], latencies[99]);
    assert!(median < Duration::from_millis(100), "median {median:?}");
    assert!(
        worst < Duration::from_secs(1),
        "worst {worst:?}, median {median:?}"
    );
    let backends = pg.backends(APP_DB, TRUST_USER.name).await;
    assert!(
        backends <= 5,
        "{backends} upstream connections for a pool of 5"
    );
    // No server connection was thrown away after a timeout.
    assert!(
        !proxy.stderr().contains("did not finish within"),
        "{}",
        proxy.stderr()
    );
}

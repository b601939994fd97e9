//! Session pooling under churn and at its limits: many short-lived clients
//! share a bounded set of upstream connections, waiters are served first
//! come first served or time out with 53300, `max_client_conn`,
//! `min_pool_size`, `server_idle_timeout`, `server_lifetime` and
//! `client_idle_timeout` hold, and an unreachable, refusing or restarted
//! upstream gives clients prompt, precise errors or fresh connections.

mod support;

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::pg_client::{self, backend_pid, scalar, sqlstate};
use support::raw_pg::{self, RawConnection};
use support::wait::{POLL_INTERVAL, eventually, poll_until, until_equal};
use support::{APP_DB, MD5_USER, PgServer, Proxy, free_port, pg_proxy_config};

const USER: &str = MD5_USER.name;
const PASSWORD: &str = MD5_USER.password;

#[tokio::test]
async fn two_thousand_connect_query_close_cycles_use_at_most_pool_size_upstream_connections() {
    const CYCLES: usize = 2_000;
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, "[pool]\ndefault_pool_size = 3\n"));
    // Setting up the server opened sessions to app too.
    let sessions_before = pg.sessions_opened(APP_DB).await;

    let started = Instant::now();
    for cycle in 0..CYCLES {
        let client = proxy.connect(USER, PASSWORD, APP_DB).await;
        assert_eq!(scalar(&client, "SELECT 1").await, "1", "cycle {cycle}");
        drop(client);
    }
    let elapsed = started.elapsed();
    let opened = pg.connections_authorized(APP_DB, USER);
    println!(
        "{CYCLES} connect/SELECT 1/close cycles through churnstile took {elapsed:?} \
         ({:?} per cycle); upstream connections opened: {opened}",
        elapsed / CYCLES as u32
    );
    assert!(
        (1..=3).contains(&opened),
        "{CYCLES} clients opened {opened} upstream connections with default_pool_size = 3"
    );
    assert!(pg.backends(APP_DB, USER).await <= 3);

    // The server's own statistics agree once they are flushed (they lag).
    let expected = sessions_before + i64::try_from(opened).expect("small count");
    eventually(
        "pg_stat_database.sessions for app catches up",
        Duration::from_secs(15),
        async || pg.sessions_opened(APP_DB).await >= expected,
    )
    .await;
    assert_eq!(pg.sessions_opened(APP_DB).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_clients_share_a_pool_of_five_without_exceeding_it() {
    const CLIENTS: usize = 50;
    const QUERIES: usize = 4;
    let pg = Arc::new(PgServer::start());
    let proxy = Arc::new(Proxy::start(&pg_proxy_config(
        &pg,
        "[pool]\ndefault_pool_size = 5\n",
    )));

    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (pg, done) = (Arc::clone(&pg), Arc::clone(&done));
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut samples = Vec::new();
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                samples.push(pg.backends(APP_DB, USER).await);
            }
            samples
        }
    });

    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let proxy = Arc::clone(&proxy);
        clients.push(tokio::spawn(async move {
            let client = proxy.connect(USER, PASSWORD, APP_DB).await;
            let mut pids = Vec::new();
            for query in 0..QUERIES {
                let row = client
                    .query_one(
                        "SELECT pg_backend_pid(), $1::int + $2::int FROM pg_sleep(0.02)",
                        &[&(index as i32), &(query as i32)],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("client {index} query {query}: {e}"));
                assert_eq!(row.get::<_, i32>(1), (index + query) as i32);
                pids.push(row.get::<_, i32>(0));
            }
            pids
        }));
    }
    let mut pids = HashSet::new();
    for client in clients {
        let client_pids = tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .expect("clients finish within 60 s")
            .expect("client task succeeded");
        // Session pooling: one server connection for the whole session.
        assert!(client_pids.windows(2).all(|pair| pair[0] == pair[1]));
        pids.extend(client_pids);
    }
    done.store(true, Ordering::SeqCst);
    let samples = sampler.await.unwrap();

    let opened = pg.connections_authorized(APP_DB, USER);
    let most = samples.iter().copied().max().unwrap_or(0);
    println!(
        "{} backend samples while {CLIENTS} clients ran: max {most}",
        samples.len()
    );
    assert_eq!(opened, 5, "upstream connections opened");
    assert_eq!(
        pids.len(),
        5,
        "distinct server backends that served clients"
    );
    assert!(!samples.is_empty());
    assert!(most <= 5, "saw {most} backends at once: {samples:?}");
}

#[tokio::test]
async fn a_client_waiting_longer_than_query_wait_timeout_gets_53300() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        "[pool]\ndefault_pool_size = 1\nquery_wait_timeout = 1\n",
    ));
    let holder = proxy.connect(USER, PASSWORD, APP_DB).await;
    holder.batch_execute("BEGIN").await.unwrap();

    let started = Instant::now();
    let error = proxy
        .try_connect(USER, PASSWORD, APP_DB)
        .await
        .expect_err("a second client got the only server connection");
    let waited = started.elapsed();
    assert_eq!(sqlstate(&error), "53300", "{error}");
    let message = error.as_db_error().unwrap().message();
    assert!(message.contains("query_wait_timeout"), "{message}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "refused after {waited:?} with query_wait_timeout = 1"
    );

    holder.batch_execute("COMMIT").await.unwrap();
    drop(holder);
    let next = proxy.connect(USER, PASSWORD, APP_DB).await;
    assert_eq!(scalar(&next, "SELECT 42").await, "42");
    assert_eq!(pg.connections_authorized(APP_DB, USER), 1);
}

/// Logs in by hand as md5_user with `application_name` and returns once
/// AuthenticationOk has arrived: the moment the proxy starts looking for a
/// server connection, before any ReadyForQuery. Later reads wait as long as
/// that takes.
async fn authenticate(port: u16, application_name: &str) -> RawConnection {
    let mut connection = RawConnection::connect(port).await.without_read_limit();
    let params = [
        ("user", USER),
        ("database", APP_DB),
        ("application_name", application_name),
    ];
    connection.send(&raw_pg::startup(&params)).await;
    connection.authenticate_md5(MD5_USER).await;
    connection
}

#[tokio::test]
async fn waiting_clients_are_served_in_arrival_order() {
    const WAITERS: usize = 6;
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, "[pool]\ndefault_pool_size = 1\n"));
    let holder = proxy.connect(USER, PASSWORD, APP_DB).await;
    holder.batch_execute("SELECT 1").await.unwrap();

    let served = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for index in 0..WAITERS {
        // After AuthenticationOk the proxy joins the pool's queue without
        // awaiting anything in between, while the next waiter still needs
        // a TCP handshake, a startup packet and an MD5 exchange before it
        // can join: so each waiter is in line before the next arrives.
        let mut waiter = tokio::time::timeout(
            Duration::from_secs(10),
            authenticate(proxy.port(), &format!("waiter_{index}")),
        )
        .await
        .expect("a waiter authenticates within 10 s");
        let served = Arc::clone(&served);
        waiters.push(tokio::spawn(async move {
            waiter.wait_ready().await;
            waiter.send(&raw_pg::query("SELECT 1")).await;
            waiter.wait_ready().await;
            served.lock().unwrap().push(index);
            waiter.send(&raw_pg::terminate()).await;
        }));
    }
    assert!(
        served.lock().unwrap().is_empty(),
        "a waiter was served while the only server connection was held"
    );

    drop(holder);
    for waiter in waiters {
        tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("waiters are served within 30 s")
            .expect("waiter task succeeded");
    }
    assert_eq!(*served.lock().unwrap(), (0..WAITERS).collect::<Vec<_>>());
    assert_eq!(pg.connections_authorized(APP_DB, USER), 1);
}

#[tokio::test]
async fn max_client_conn_refuses_the_extra_client_with_53300_and_admits_after_one_leaves() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, "[general]\nmax_client_conn = 3\n"));
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(proxy.connect(USER, PASSWORD, APP_DB).await);
    }

    let error = proxy
        .try_connect(USER, PASSWORD, APP_DB)
        .await
        .expect_err("a fourth client got in with max_client_conn = 3");
    assert_eq!(sqlstate(&error), "53300", "{error}");
    for (index, client) in clients.iter().enumerate() {
        assert_eq!(
            scalar(client, &format!("SELECT {index}")).await,
            index.to_string()
        );
    }

    drop(clients.pop());
    // The slot frees once churnstile has finished with the departed client
    // (after resetting its server connection): retry until then.
    let newcomer = poll_until("a freed slot", Duration::from_secs(10), async || {
        let attempt = proxy.try_connect(USER, PASSWORD, APP_DB).await;
        if let Err(error) = &attempt {
            assert_eq!(sqlstate(error), "53300", "{error}");
        }
        attempt
    })
    .await;
    assert_eq!(scalar(&newcomer, "SELECT 'in'").await, "in");
    for client in &clients {
        assert_eq!(scalar(client, "SELECT 'still here'").await, "still here");
    }
}

#[tokio::test]
async fn min_pool_size_opens_connections_with_no_clients() {
    let pg = PgServer::start();
    let _proxy = Proxy::start(&pg_proxy_config(
        &pg,
        "[pool]\nmin_pool_size = 2\ndefault_pool_size = 5\n",
    ));
    until_equal(
        "idle upstream connections for md5_user",
        Duration::from_secs(10),
        2,
        async || pg.backends(APP_DB, USER).await,
    )
    .await;
    // Three janitor ticks later it has neither opened more nor dropped any.
    let watch_until = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < watch_until {
        assert_eq!(pg.backends(APP_DB, USER).await, 2);
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    assert_eq!(pg.connections_authorized(APP_DB, USER), 2);
}

#[tokio::test]
async fn idle_upstream_connections_close_after_server_idle_timeout() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, "[pool]\nserver_idle_timeout = 1\n"));
    let clients = vec![
        proxy.connect(USER, PASSWORD, APP_DB).await,
        proxy.connect(USER, PASSWORD, APP_DB).await,
        proxy.connect(USER, PASSWORD, APP_DB).await,
    ];
    for client in &clients {
        assert_eq!(scalar(client, "SELECT 1").await, "1");
    }
    assert_eq!(pg.backends(APP_DB, USER).await, 3);
    drop(clients);

    until_equal(
        "upstream connections left after server_idle_timeout",
        Duration::from_secs(10),
        0,
        async || pg.backends(APP_DB, USER).await,
    )
    .await;
    let client = proxy.connect(USER, PASSWORD, APP_DB).await;
    assert_eq!(scalar(&client, "SELECT 2").await, "2");
    assert_eq!(pg.connections_authorized(APP_DB, USER), 4);
}

#[tokio::test]
async fn server_lifetime_zero_gives_every_client_a_fresh_upstream_connection() {
    const CLIENTS: usize = 5;
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, "[pool]\nserver_lifetime = 0\n"));
    let mut pids = HashSet::new();
    for _ in 0..CLIENTS {
        let client = proxy.connect(USER, PASSWORD, APP_DB).await;
        pids.insert(backend_pid(&client).await);
        drop(client);
    }
    assert_eq!(pids.len(), CLIENTS, "distinct backends");
    assert_eq!(pg.connections_authorized(APP_DB, USER), CLIENTS);
    until_equal(
        "used upstream connections left open",
        Duration::from_secs(10),
        0,
        async || pg.backends(APP_DB, USER).await,
    )
    .await;
}

/// Logs in twice, expecting each attempt to fail with 08006 (no server
/// connection to be had); returns how long each attempt took.
async fn failed_logins_08006(proxy: &Proxy) -> [Duration; 2] {
    let mut took = [Duration::ZERO; 2];
    for (attempt, took) in took.iter_mut().enumerate() {
        let started = Instant::now();
        let error = proxy
            .try_connect(USER, PASSWORD, APP_DB)
            .await
            .expect_err("logged in without a reachable upstream");
        *took = started.elapsed();
        assert_eq!(sqlstate(&error), "08006", "attempt {attempt}: {error}");
    }
    took
}

#[tokio::test]
async fn an_upstream_with_nothing_listening_gives_08006_after_query_wait_timeout() {
    let pg = PgServer::start();
    let closed_port = free_port();
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        &format!(
            "[pool]\nserver_connect_timeout = 2\nquery_wait_timeout = 1\n\
             [databases.app]\nport = {closed_port}\n"
        ),
    ));
    // Connects are retried with back-off while the client may still wait,
    // then the client gets a clean error: never a hang.
    for (attempt, took) in failed_logins_08006(&proxy).await.into_iter().enumerate() {
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(3),
            "attempt {attempt} took {took:?} with query_wait_timeout = 1"
        );
    }
}

#[tokio::test]
async fn an_upstream_that_never_answers_gives_08006_after_server_connect_timeout() {
    let pg = PgServer::start();
    // Accepts TCP connections (into the backlog) and never says a word.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        &format!(
            "[pool]\nserver_connect_timeout = 2\nquery_wait_timeout = 1\n\
             [databases.app]\nport = {silent_port}\n"
        ),
    ));
    for (attempt, took) in failed_logins_08006(&proxy).await.into_iter().enumerate() {
        assert!(
            took >= Duration::from_millis(1_900) && took < Duration::from_secs(5),
            "attempt {attempt} took {took:?} with server_connect_timeout = 2"
        );
    }
}

#[tokio::test]
async fn a_wrong_upstream_password_gives_the_client_the_upstreams_28p01() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        "[users.md5_user]\nupstream_password = \"wrong\"\n",
    ));
    let error = proxy
        .try_connect(USER, PASSWORD, APP_DB)
        .await
        .expect_err("logged in with a wrong upstream password");
    assert_eq!(sqlstate(&error), "28P01", "{error}");
    let message = error.as_db_error().unwrap().message();
    assert!(
        message.starts_with("upstream server: ") && message.contains("md5_user"),
        "{message}"
    );
    assert_eq!(pg.connections_authorized(APP_DB, USER), 0);
}

#[tokio::test]
async fn after_an_upstream_restart_the_first_new_client_gets_a_fresh_connection() {
    let mut pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    let mut old_pids = HashSet::new();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let client = proxy.connect(USER, PASSWORD, APP_DB).await;
        old_pids.insert(backend_pid(&client).await);
        clients.push(client);
    }
    let connected_across = clients.pop().unwrap();
    drop(clients);
    assert_eq!(old_pids.len(), 4);
    assert_eq!(pg.connections_authorized(APP_DB, USER), 4);

    pg.restart();

    // The three idle pooled connections are dead; the first client after
    // the restart must not be handed one of them.
    let first = proxy.connect(USER, PASSWORD, APP_DB).await;
    let pid = backend_pid(&first).await;
    assert!(!old_pids.contains(&pid), "served by a pre-restart backend");
    assert_eq!(pg.connections_authorized(APP_DB, USER), 5);
    drop(first);

    // A session that spanned the restart learns its server is gone.
    let error = connected_across
        .simple_query("SELECT 1")
        .await
        .expect_err("a session survived the server restart");
    assert!(connected_across.is_closed(), "{error}");

    for _ in 0..3 {
        let client = proxy.connect(USER, PASSWORD, APP_DB).await;
        assert_eq!(
            scalar(&client, "SELECT 'after restart'").await,
            "after restart"
        );
    }
}

#[tokio::test]
async fn an_idle_client_is_disconnected_with_57p05_after_client_idle_timeout() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        "[pool]\nclient_idle_timeout = 1\ndefault_pool_size = 1\n",
    ));
    let (client, connection) =
        pg_client::connect_watched(&proxy.connection_string(USER, PASSWORD, APP_DB))
            .await
            .expect("connecting through churnstile");

    // A query running longer than the timeout is not idleness.
    client.batch_execute("SELECT pg_sleep(1.5)").await.unwrap();
    let pid = backend_pid(&client).await;
    let idle_since = Instant::now();

    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the idle client was not disconnected within 10 s")
        .expect("connection task");
    let idle_for = idle_since.elapsed();
    let error = ended.expect_err("the connection ended without an error");
    assert_eq!(sqlstate(&error), "57P05", "{error}");
    assert!(
        idle_for >= Duration::from_millis(900),
        "disconnected after {idle_for:?} idle with client_idle_timeout = 1"
    );

    // Its server connection went back to the pool.
    let next = proxy.connect(USER, PASSWORD, APP_DB).await;
    assert_eq!(backend_pid(&next).await, pid);
    assert_eq!(pg.connections_authorized(APP_DB, USER), 1);
}

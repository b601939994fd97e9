//! A configuration whose databases all speak MySQL opens MySQL listeners
//! only: no PostgreSQL port or Unix socket is taken, and MySQL clients are
//! served as usual, and shut down as PostgreSQL's are on SIGINT, with
//! MariaDB's ERR 1053 where PostgreSQL clients get 57P01.

mod support;

use support::mysql_client::{connect, scalar};
use support::{MYSQL_APP_USER, MariaDbServer, Proxy, mysql_proxy_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_only_config_opens_no_postgres_listener() {
    let maria = MariaDbServer::start();
    let config: String = mysql_proxy_config(&maria, "session", 2)
        .lines()
        .filter(|line| !line.starts_with("postgres ="))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(!config.contains("{port}"), "{config}");
    let proxy = Proxy::start(&config);

    let mut conn = connect(&proxy, MYSQL_APP_USER).await;
    assert_eq!(scalar(&mut conn, "SELECT 40 + 2").await, "42");

    let mut sockets: Vec<String> = std::fs::read_dir(proxy.socket_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    sockets.sort();
    assert_eq!(sockets, ["mysql.sock"], "no .s.PGSQL socket");
    let started = proxy
        .stderr()
        .lines()
        .find(|line| line.contains("churnstile is accepting clients"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no start line in:\n{}", proxy.stderr()));
    assert!(started.contains("listen=[]"), "{started}");
    assert!(
        started.contains(&format!("mysql=[127.0.0.1:{}]", proxy.mysql_port())),
        "{started}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_lets_a_mysql_transaction_commit_then_tells_the_client_1053() {
    use mysql_async::prelude::Queryable;
    use support::raw_mysql::{RawMySql, err_message};
    use support::shutdown::{PROMPTLY, wait_exit};

    let maria = MariaDbServer::start();
    let mut proxy = Proxy::start(&mysql_proxy_config(&maria, "session", 2));
    let mut idle = RawMySql::login(proxy.mysql_port(), MYSQL_APP_USER).await;
    let mut busy = connect(&proxy, MYSQL_APP_USER).await;
    busy.query_drop("CREATE TABLE app.orders (n INT) ENGINE=InnoDB")
        .await
        .unwrap();
    busy.query_drop("BEGIN").await.unwrap();
    busy.query_drop("INSERT INTO app.orders VALUES (1)")
        .await
        .unwrap();

    proxy.send_signal(support::Signal::INT);
    // An idle client is told at once, as MariaDB tells it: ERR 1053 with
    // SQLSTATE 08S01 and sequence id 0, then the connection closes.
    let (seq, packet) = idle.read_packet().await;
    assert_eq!(seq, 0);
    assert_eq!(
        err_message(&packet, 1053),
        "Server shutdown in progress",
        "{packet:02x?}"
    );
    assert_eq!(&packet[3..9], b"#08S01");
    assert!(
        idle.try_read_packet().await.is_err(),
        "then the connection closes"
    );

    assert_eq!(wait_exit(&mut proxy, std::time::Duration::ZERO), None);
    busy.query_drop("COMMIT").await.unwrap();
    // The session ends at its next idle moment; a query racing it may
    // still be served.
    support::wait::eventually(
        "the session ends after its transaction",
        PROMPTLY,
        async || busy.query_drop("SELECT 1").await.is_err(),
    )
    .await;
    assert_eq!(
        wait_exit(&mut proxy, PROMPTLY),
        Some(0),
        "{}",
        proxy.stderr()
    );
    assert_eq!(maria.query("SELECT count(*) FROM app.orders").trim(), "1");
    let logged = proxy.stderr();
    assert!(
        logged.contains("pooler error: Server shutdown in progress")
            && logged.contains("code=1053"),
        "log_pooler_errors: {logged}"
    );
}

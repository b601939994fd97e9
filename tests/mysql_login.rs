//! Logging in to churnstile's MySQL listener with real clients against a
//! real MariaDB: mysql_native_password, caching_sha2_password's full
//! authentication (RSA over TCP, clear text over the Unix socket) and fast
//! path, `*HEX` native hashes, the MySQL error codes of refused logins
//! (1045, 1049, 1046, 1040) and that they cost no upstream connection, the
//! mariadb command-line client, zero-config `mysql://` mode, and churnstile
//! logging in upstream with caching_sha2_password through the RSA exchange.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use support::mysql_client::{
    connect, error_code, error_message, proxy_opts, proxy_socket_opts, scalar, tcp_opts,
    try_connect,
};
use support::raw_mysql::{self, RawMySql};
use support::wait::{POLL_INTERVAL, poll_until};
use support::{
    APP_DB, MYSQL_APP_USER, MYSQL_OTHER_USER, MariaDbServer, MySqlProxyUser, NATIVE_USER, Proxy,
    mysql_proxy_config, mysql_proxy_config_with,
};

const USER: MySqlProxyUser = MYSQL_APP_USER;
const CACHING_SHA2: &str = "[general]\nmysql_auth_plugin = \"caching_sha2_password\"\n";

/// churnstile with transaction pooling and `pool_size` server connections
/// in front of `maria`, with `extra` TOML.
fn transaction_proxy(maria: &MariaDbServer, pool_size: usize, extra: &str) -> Proxy {
    Proxy::start(&mysql_proxy_config_with(
        maria,
        "transaction",
        pool_size,
        extra,
    ))
}

/// `user` with another password.
fn with_password(user: MySqlProxyUser, password: &'static str) -> MySqlProxyUser {
    MySqlProxyUser {
        name: user.name,
        password,
    }
}

/// The error code of a login that must fail.
async fn refused(opts: mysql_async::OptsBuilder) -> mysql_async::Error {
    match try_connect(opts).await {
        Ok(_) => panic!("the login succeeded"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn native_password_login_runs_queries_as_the_databases_forced_user() {
    let maria = MariaDbServer::start();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "session", 1));
    let before = maria.connections_total();

    for opts in [proxy_opts(&proxy, USER), proxy_socket_opts(&proxy, USER)] {
        let mut conn = try_connect(opts.clone())
            .await
            .unwrap_or_else(|e| panic!("{opts:?}: {e}; stderr:\n{}", proxy.stderr()));
        assert_eq!(conn.server_version(), (5, 7, 99), "churnstile's version");
        assert_eq!(
            scalar(&mut conn, "SELECT CURRENT_USER()").await,
            "native_user@%"
        );
        assert_eq!(scalar(&mut conn, "SELECT DATABASE()").await, APP_DB);
        assert_eq!(scalar(&mut conn, "SELECT 6 * 7").await, "42");
        conn.disconnect().await.unwrap();
    }
    // Session pooling: the second client reused the first one's connection.
    assert_eq!(maria.connections_total(), before + 1 + 1);
}

#[tokio::test]
async fn caching_sha2_first_login_authenticates_fully_over_rsa_and_later_ones_take_the_fast_path() {
    let maria = MariaDbServer::start();
    let proxy = transaction_proxy(&maria, 2, CACHING_SHA2);
    let port = proxy.mysql_port();

    let wrong_first = RawMySql::login_caching_sha2(port, USER.name, "wrong").await;
    assert!(
        wrong_first.full_auth,
        "an unproven user takes the full path"
    );
    assert_eq!(wrong_first.outcome.err(), Some(1045));

    let first = RawMySql::login_caching_sha2(port, USER.name, USER.password).await;
    assert!(first.full_auth, "the first login of a user is a full one");
    let mut first = first
        .outcome
        .expect("full authentication with RSA succeeds");
    assert_eq!(first.scalar("SELECT 'full'").await, "full");

    let second = RawMySql::login_caching_sha2(port, USER.name, USER.password).await;
    assert!(!second.full_auth, "a proven user takes the fast path");
    let mut second = second.outcome.expect("the fast path succeeds");
    assert_eq!(second.scalar("SELECT 'fast'").await, "fast");

    let wrong_fast = RawMySql::login_caching_sha2(port, USER.name, "wrong").await;
    assert_eq!(wrong_fast.outcome.err(), Some(1045));

    // mysql_async through both paths: otheruser has not logged in yet.
    for path in ["full", "fast"] {
        let mut conn = connect(&proxy, MYSQL_OTHER_USER).await;
        assert_eq!(scalar(&mut conn, &format!("SELECT '{path}'")).await, path);
        conn.disconnect().await.unwrap();
    }
    let other = RawMySql::login_caching_sha2(port, MYSQL_OTHER_USER.name, "other_secret").await;
    assert!(
        !other.full_auth,
        "mysql_async's full authentication was remembered"
    );
    assert!(other.outcome.is_ok());
    let wrong = refused(proxy_opts(&proxy, with_password(MYSQL_OTHER_USER, "nope"))).await;
    assert_eq!(error_code(&wrong), 1045, "{wrong}");
}

#[tokio::test]
async fn caching_sha2_full_authentication_over_the_unix_socket_takes_the_password_in_clear() {
    let maria = MariaDbServer::start();
    let proxy = transaction_proxy(&maria, 2, CACHING_SHA2);

    let wrong = refused(proxy_socket_opts(&proxy, with_password(USER, "wrong"))).await;
    assert_eq!(error_code(&wrong), 1045, "{wrong}");
    assert_eq!(
        error_message(&wrong),
        "Access denied for user 'appuser'@'localhost' (using password: YES)"
    );

    let mut conn = try_connect(proxy_socket_opts(&proxy, USER))
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", proxy.stderr()));
    assert_eq!(
        scalar(&mut conn, "SELECT 'over the socket'").await,
        "over the socket"
    );
    conn.disconnect().await.unwrap();

    // The socket login was a full one: TCP logins now take the fast path.
    let tcp = RawMySql::login_caching_sha2(proxy.mysql_port(), USER.name, USER.password).await;
    assert!(!tcp.full_auth);
    assert!(tcp.outcome.is_ok());
}

#[tokio::test]
async fn a_mysql_native_password_hash_secret_accepts_the_password_it_hashes() {
    const HASHED_PASSWORD: &str = "hashed_pass";
    let maria = MariaDbServer::start();
    let hash = maria.query(&format!("SELECT PASSWORD('{HASHED_PASSWORD}')"));
    assert!(hash.starts_with('*') && hash.len() == 41, "{hash}");
    let hashed_user = MySqlProxyUser {
        name: "hasheduser",
        password: HASHED_PASSWORD,
    };
    let extra = format!("[users.hasheduser]\npassword = \"{hash}\"\n");
    // A native greeting, and a caching_sha2 one the client is switched from.
    for plugin_setting in ["", CACHING_SHA2] {
        let proxy = transaction_proxy(&maria, 2, &format!("{plugin_setting}{extra}"));
        let mut conn = try_connect(proxy_opts(&proxy, hashed_user))
            .await
            .unwrap_or_else(|e| panic!("{plugin_setting:?}: {e}; stderr:\n{}", proxy.stderr()));
        assert_eq!(scalar(&mut conn, "SELECT 'hashed'").await, "hashed");
        conn.disconnect().await.unwrap();

        let wrong = refused(proxy_opts(&proxy, with_password(hashed_user, "wrong"))).await;
        assert_eq!(error_code(&wrong), 1045, "{plugin_setting:?}: {wrong}");
    }
}

#[tokio::test]
async fn refused_logins_get_mysql_error_codes_and_open_no_upstream_connection() {
    let maria = MariaDbServer::start();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let before = maria.connections_total();

    let wrong = refused(proxy_opts(&proxy, with_password(USER, "wrong"))).await;
    assert_eq!(error_code(&wrong), 1045, "{wrong}");
    assert_eq!(
        error_message(&wrong),
        "Access denied for user 'appuser'@'127.0.0.1' (using password: YES)"
    );

    let unknown_user = MySqlProxyUser {
        name: "nobody",
        password: "whatever",
    };
    let unknown = refused(proxy_opts(&proxy, unknown_user)).await;
    assert_eq!(error_code(&unknown), 1045, "{unknown}");
    assert_eq!(
        error_message(&unknown),
        "Access denied for user 'nobody'@'127.0.0.1' (using password: YES)"
    );

    let bad_db = refused(tcp_opts(
        proxy.mysql_port(),
        USER.name,
        USER.password,
        Some("nope"),
    ))
    .await;
    assert_eq!(error_code(&bad_db), 1049, "{bad_db}");
    assert_eq!(error_message(&bad_db), "Unknown database 'nope'");

    // Only the query asking counted itself.
    let after_refusals = maria.connections_total();
    assert_eq!(after_refusals, before + 1, "refused logins reached MariaDB");

    let mut conn = connect(&proxy, USER).await;
    assert_eq!(scalar(&mut conn, "SELECT 1").await, "1");
    assert_eq!(maria.connections_total(), after_refusals + 1 + 1);
}

#[tokio::test]
async fn without_a_database_named_the_only_one_is_used_and_with_several_the_login_gets_1046() {
    let maria = MariaDbServer::start();
    let single = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let mut conn = try_connect(tcp_opts(
        single.mysql_port(),
        USER.name,
        USER.password,
        None,
    ))
    .await
    .expect("the only database is the default");
    assert_eq!(scalar(&mut conn, "SELECT DATABASE()").await, APP_DB);
    conn.disconnect().await.unwrap();

    let extra = format!(
        "[databases.second]\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\n\
         dbname = \"{APP_DB}\"\nuser = \"{}\"\npassword = \"{}\"\n",
        maria.port(),
        NATIVE_USER.name,
        NATIVE_USER.password
    );
    let several = transaction_proxy(&maria, 2, &extra);
    let port = several.mysql_port();
    let unnamed = refused(tcp_opts(port, USER.name, USER.password, None)).await;
    assert_eq!(error_code(&unnamed), 1046, "{unnamed}");
    let mut conn = try_connect(tcp_opts(port, USER.name, USER.password, Some("second")))
        .await
        .expect("a named database");
    assert_eq!(scalar(&mut conn, "SELECT DATABASE()").await, APP_DB);
}

#[tokio::test]
async fn a_client_beyond_max_client_conn_gets_1040_instead_of_the_greeting() {
    let maria = MariaDbServer::start();
    let proxy = transaction_proxy(&maria, 2, "[general]\nmax_client_conn = 2\n");
    // Proxy::start's probes of the listeners hold slots until churnstile
    // has seen them close.
    let mut first = poll_until("a first client gets in", POLL_INTERVAL * 100, async || {
        try_connect(proxy_opts(&proxy, USER)).await
    })
    .await;
    let second = poll_until("a second client gets in", POLL_INTERVAL * 100, async || {
        try_connect(proxy_opts(&proxy, USER)).await
    })
    .await;

    let third = refused(proxy_opts(&proxy, USER)).await;
    assert_eq!(error_code(&third), 1040, "{third}");
    assert_eq!(
        scalar(&mut first, "SELECT 'still served'").await,
        "still served"
    );

    second.disconnect().await.unwrap();
    let mut third = poll_until(
        "a client gets in once another has left",
        POLL_INTERVAL * 100,
        async || try_connect(proxy_opts(&proxy, USER)).await,
    )
    .await;
    assert_eq!(scalar(&mut third, "SELECT 3").await, "3");
}

#[tokio::test]
async fn a_client_asking_for_tls_is_told_to_connect_without_it() {
    let maria = MariaDbServer::start();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 1));
    let reply = RawMySql::request_tls(proxy.mysql_port()).await;
    let message = raw_mysql::err_message(&reply, 1043);
    assert!(message.contains("TLS"), "{message}");
}

#[tokio::test]
async fn a_client_silent_after_the_greeting_is_refused_after_client_login_timeout() {
    let maria = MariaDbServer::start();
    let proxy = transaction_proxy(&maria, 1, "[pool]\nclient_login_timeout = 1\n");
    let (mut silent, greeting) = RawMySql::greeting_only(proxy.mysql_port()).await;
    assert_eq!(greeting.first(), Some(&10), "a HandshakeV10");
    let started = Instant::now();
    let (_, reply) = silent.read_packet().await;
    let waited = started.elapsed();
    let message = raw_mysql::err_message(&reply, 1043);
    assert!(message.contains("client_login_timeout"), "{message}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "refused after {waited:?} with client_login_timeout = 1"
    );
    assert!(
        silent.try_read_packet().await.is_err(),
        "the connection stayed open"
    );
}

/// Runs the mariadb command-line client with `args` after the common ones.
fn mariadb_cli(user: MySqlProxyUser, args: &[&str]) -> Output {
    Command::new("mariadb")
        .arg("--no-defaults")
        .args(["--batch", "--skip-column-names", "--connect-timeout=10"])
        .arg(format!("--user={}", user.name))
        .arg(format!("--password={}", user.password))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running mariadb: {e}"))
}

#[tokio::test]
async fn the_mariadb_command_line_client_works_over_tcp_and_the_unix_socket() {
    let maria = MariaDbServer::start();
    let proxy = Proxy::start(&mysql_proxy_config(&maria, "transaction", 2));
    let port = format!("--port={}", proxy.mysql_port());
    let socket = format!("--socket={}", proxy.mysql_socket().display());
    let sql = "--execute=SELECT CONCAT('in ', DATABASE()), CURRENT_USER(); SELECT 2 + 2";
    for transport in [
        vec!["--protocol=tcp", "--host=127.0.0.1", &port],
        vec!["--protocol=socket", &socket],
    ] {
        let mut args = transport.clone();
        args.extend([sql, APP_DB]);
        let output = mariadb_cli(USER, &args);
        assert!(
            output.status.success(),
            "{transport:?}: {}; churnstile stderr:\n{}",
            String::from_utf8_lossy(&output.stderr),
            proxy.stderr()
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "in app\tnative_user@%\n4\n",
            "{transport:?}"
        );

        let mut args = transport.clone();
        args.push("--execute=SELECT 1");
        let output = mariadb_cli(with_password(USER, "wrong"), &args);
        assert!(
            !output.status.success(),
            "{transport:?}: wrong password accepted"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("ERROR 1045 (28000)"),
            "{transport:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn zero_config_mysql_url_lets_clients_log_in_as_the_upstream_user() {
    let maria = MariaDbServer::start();
    let url = format!(
        "mysql://{}:{}@127.0.0.1:{}/{APP_DB}",
        NATIVE_USER.name,
        NATIVE_USER.password,
        maria.port()
    );
    let proxy =
        Proxy::start_zero_config_mysql(&url, &["--pool-mode", "transaction", "--pool-size", "1"]);
    let port = proxy.mysql_port();
    let opts = tcp_opts(port, NATIVE_USER.name, NATIVE_USER.password, Some(APP_DB));
    let mut conn = try_connect(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", proxy.stderr()));
    assert_eq!(scalar(&mut conn, "SELECT DATABASE()").await, APP_DB);
    let wrong = refused(tcp_opts(port, NATIVE_USER.name, "wrong", Some(APP_DB))).await;
    assert_eq!(error_code(&wrong), 1045, "{wrong}");
}

#[tokio::test]
async fn churnstile_logs_in_upstream_with_caching_sha2_full_authentication_over_rsa() {
    let maria = MariaDbServer::start();
    // A: in front of MariaDB, announcing caching_sha2_password.
    let front = Proxy::start(&mysql_proxy_config_with(&maria, "session", 2, CACHING_SHA2));
    // B: its database is A, logged in to as A's user.
    let through_front = format!(
        "[databases.{APP_DB}]\nport = {}\nuser = \"{}\"\npassword = \"{}\"\n",
        front.mysql_port(),
        USER.name,
        USER.password
    );
    let chained = transaction_proxy(&maria, 1, &through_front);

    let mut conn = connect(&chained, MYSQL_OTHER_USER).await;
    let row: Option<(String, String)> = conn
        .query_first("SELECT CURRENT_USER(), DATABASE()")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nB's stderr:\n{}\nA's stderr:\n{}",
                chained.stderr(),
                front.stderr()
            )
        });
    assert_eq!(row, Some(("native_user@%".to_owned(), APP_DB.to_owned())));

    // B's login to A was the user's first: a full authentication, which
    // over TCP without TLS is the RSA exchange. A now knows the user.
    let fast = RawMySql::login_caching_sha2(front.mysql_port(), USER.name, USER.password).await;
    assert!(
        !fast.full_auth,
        "B never completed a full authentication on A"
    );
    assert!(fast.outcome.is_ok());
}

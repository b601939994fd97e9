//! How clients log in to churnstile and how churnstile logs in upstream:
//! md5, SCRAM-SHA-256 (from plaintext, SCRAM verifier and md5 secrets) and
//! trust for clients; cleartext, md5, SCRAM and trust upstream; failed
//! logins (28P01, 28000, 3D000) that never reach the server;
//! `client_login_timeout`; SSL/GSS encryption requests, protocol version
//! negotiation; and the zero-config `--listen`/`--upstream` mode.

mod support;

use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use support::pg_client::sqlstate;
use support::raw_pg::{self, AUTH_MD5, AUTH_OK, AUTH_SASL, RawConnection};
use support::{
    APP_DB, MD5_USER, PG_SUPERUSER, PLAIN_USER, PgServer, PgUser, Proxy, SCRAM_USER, TRUST_USER,
    pg_proxy_config, trust_proxy_config,
};
use tokio_postgres::Client;

/// Bound on anything a test waits for that should take well under a second.
const WAIT: Duration = Duration::from_secs(10);

async fn current_user(client: &Client) -> String {
    client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

/// Logs in through the proxy and checks the session is `user`'s.
async fn assert_logs_in(proxy: &Proxy, user: &str, password: &str) {
    let client = proxy.connect(user, password, APP_DB).await;
    assert_eq!(current_user(&client).await, user);
}

/// The SQLSTATE a login through the proxy fails with.
async fn login_error(proxy: &Proxy, user: &str, password: &str, db: &str) -> String {
    let error = proxy
        .try_connect(user, password, db)
        .await
        .err()
        .unwrap_or_else(|| panic!("{user} logged in to {db} with password {password:?}"));
    sqlstate(&error).to_owned()
}

/// churnstile is still running and has not panicked.
fn assert_proxy_healthy(proxy: &mut Proxy) {
    assert!(
        proxy.wait_exit(Duration::ZERO).is_none(),
        "churnstile exited; stderr:\n{}",
        proxy.stderr()
    );
    let stderr = proxy.stderr();
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
}

/// `md5` + hex md5(password || user): PostgreSQL's stored md5 secret.
fn md5_secret(user: &PgUser) -> String {
    let digest = Md5::digest(format!("{}{}", user.password, user.name).as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("md5{hex}")
}

/// `rolpassword` of `user` as the server stores it.
async fn stored_secret(pg: &PgServer, user: &str) -> String {
    let client = pg.client(PG_SUPERUSER, "postgres").await;
    client
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&user],
        )
        .await
        .unwrap()
        .get(0)
}

/// Reads a trust login to its end and checks it succeeded: AuthenticationOk
/// first, BackendKeyData, and ReadyForQuery idle last.
async fn finish_trust_login(connection: &mut RawConnection) {
    let messages = connection.read_until_ready_or_error().await;
    assert_eq!(raw_pg::auth_code(&messages[0]), AUTH_OK, "{messages:?}");
    assert!(messages.iter().any(|(tag, _)| *tag == b'K'), "{messages:?}");
    assert_eq!(
        messages.last(),
        Some(&(b'Z', b"I".to_vec())),
        "{messages:?}"
    );
}

/// Runs `SELECT 6 * 7` and checks the one value is "42".
async fn assert_query_works(connection: &mut RawConnection) {
    connection.send(&raw_pg::query("SELECT 6 * 7")).await;
    let messages = connection.read_until_ready_or_error().await;
    let data_row = messages
        .iter()
        .find(|(tag, _)| *tag == b'D')
        .unwrap_or_else(|| panic!("no DataRow: {messages:?}"));
    // Column count 1, value length 2, "42".
    assert_eq!(data_row.1, [0, 1, 0, 0, 0, 2, b'4', b'2']);
    assert_eq!(messages.last().map(|m| m.0), Some(b'Z'));
}

/// The AuthenticationRequest code churnstile answers `user`'s startup with.
async fn first_auth_request(proxy: &Proxy, user: &str) -> (i32, Vec<u8>) {
    let mut connection = RawConnection::connect(proxy.port()).await;
    connection.send(&raw_pg::app_startup(user)).await;
    let message = connection
        .read_message()
        .await
        .expect("churnstile closed the connection after the startup packet");
    (raw_pg::auth_code(&message), message.1)
}

#[tokio::test]
async fn md5_auth_type_challenges_md5_user_with_md5_and_accepts_its_password() {
    let pg = PgServer::start();
    let mut proxy = Proxy::start(&pg_proxy_config(&pg, ""));

    let (code, body) = first_auth_request(&proxy, MD5_USER.name).await;
    assert_eq!(code, AUTH_MD5);
    assert_eq!(body.len(), 8, "code and a 4-byte salt");
    assert_logs_in(&proxy, MD5_USER.name, MD5_USER.password).await;
    assert_eq!(
        login_error(&proxy, MD5_USER.name, "md5_wrong", APP_DB).await,
        "28P01"
    );
    assert_proxy_healthy(&mut proxy);
}

#[tokio::test]
async fn scram_auth_type_logs_in_with_scram_from_a_plaintext_secret() {
    let pg = PgServer::start();
    let mut proxy = Proxy::start(&pg_proxy_config(
        &pg,
        "[general]\nauth_type = \"scram-sha-256\"\n",
    ));

    let (code, body) = first_auth_request(&proxy, SCRAM_USER.name).await;
    assert_eq!(code, AUTH_SASL);
    assert_eq!(&body[4..], b"SCRAM-SHA-256\0\0", "mechanism list");
    assert_logs_in(&proxy, SCRAM_USER.name, SCRAM_USER.password).await;
    assert_eq!(
        login_error(&proxy, SCRAM_USER.name, "scram_wrong", APP_DB).await,
        "28P01"
    );
    assert_proxy_healthy(&mut proxy);
}

#[tokio::test]
async fn a_scram_verifier_secret_logs_the_client_in_with_scram() {
    let pg = PgServer::start();
    let verifier = stored_secret(&pg, SCRAM_USER.name).await;
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
    let mut proxy = Proxy::start(&pg_proxy_config(
        &pg,
        &format!(
            "[users.{}]\npassword = \"{verifier}\"\nupstream_password = \"{}\"\n",
            SCRAM_USER.name, SCRAM_USER.password
        ),
    ));

    let (code, _) = first_auth_request(&proxy, SCRAM_USER.name).await;
    assert_eq!(code, AUTH_SASL, "md5 auth_type falls back to SCRAM");
    assert_logs_in(&proxy, SCRAM_USER.name, SCRAM_USER.password).await;
    assert_eq!(
        login_error(&proxy, SCRAM_USER.name, "scram_wrong", APP_DB).await,
        "28P01"
    );
    assert_eq!(pg.connections_authorized(APP_DB, SCRAM_USER.name), 1);
    assert_proxy_healthy(&mut proxy);
}

#[tokio::test]
async fn an_md5_secret_logs_the_client_in_with_md5() {
    let pg = PgServer::start();
    let secret = md5_secret(&MD5_USER);
    assert_eq!(secret, stored_secret(&pg, MD5_USER.name).await);
    let mut proxy = Proxy::start(&pg_proxy_config(
        &pg,
        &format!(
            "[users.{}]\npassword = \"{secret}\"\nupstream_password = \"{}\"\n",
            MD5_USER.name, MD5_USER.password
        ),
    ));

    let (code, _) = first_auth_request(&proxy, MD5_USER.name).await;
    assert_eq!(code, AUTH_MD5);
    assert_logs_in(&proxy, MD5_USER.name, MD5_USER.password).await;
    assert_eq!(
        login_error(&proxy, MD5_USER.name, &secret, APP_DB).await,
        "28P01",
        "the stored hash itself is not a password"
    );
    assert_eq!(pg.connections_authorized(APP_DB, MD5_USER.name), 1);
    assert_proxy_healthy(&mut proxy);
}

#[tokio::test]
async fn trust_auth_type_asks_no_password() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&trust_proxy_config(&pg, ""));

    let (code, _) = first_auth_request(&proxy, MD5_USER.name).await;
    assert_eq!(code, AUTH_OK);
    assert_logs_in(&proxy, MD5_USER.name, "anything at all").await;
    assert_logs_in(&proxy, TRUST_USER.name, "").await;
    assert_eq!(
        login_error(&proxy, "stranger", "", APP_DB).await,
        "28000",
        "trust still requires a configured user"
    );
}

#[tokio::test]
async fn churnstile_logs_in_upstream_with_cleartext_md5_scram_and_trust() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        &format!(
            "[users.{name}]\npassword = \"client_side\"\nupstream_user = \"{name}\"\n",
            name = TRUST_USER.name
        ),
    ));

    for user in [PLAIN_USER, MD5_USER, SCRAM_USER] {
        assert_logs_in(&proxy, user.name, user.password).await;
    }
    assert_logs_in(&proxy, TRUST_USER.name, "client_side").await;

    for user in [PLAIN_USER, MD5_USER, SCRAM_USER, TRUST_USER] {
        assert_eq!(
            pg.connections_authorized(APP_DB, user.name),
            1,
            "{} upstream logins",
            user.name
        );
    }
    let log = pg.log();
    for user in [PLAIN_USER, MD5_USER, SCRAM_USER] {
        let line = format!("identity=\"{}\" method={}", user.name, user.method);
        assert!(log.contains(&line), "no `{line}` in the server log");
    }
}

#[tokio::test]
async fn a_wrong_password_gets_28p01_and_never_reaches_the_server() {
    let pg = PgServer::start();
    let mut proxy = Proxy::start(&pg_proxy_config(&pg, ""));

    for user in [MD5_USER, SCRAM_USER, PLAIN_USER] {
        assert_eq!(
            login_error(&proxy, user.name, "wrong", APP_DB).await,
            "28P01"
        );
        assert_eq!(
            login_error(&proxy, user.name, "", APP_DB).await,
            "28P01",
            "{} with an empty password",
            user.name
        );
        assert_eq!(pg.connections_authorized(APP_DB, user.name), 0);
    }
    assert_proxy_healthy(&mut proxy);
    assert_logs_in(&proxy, MD5_USER.name, MD5_USER.password).await;
}

#[tokio::test]
async fn an_unknown_user_gets_28p01_like_a_wrong_password_and_never_reaches_the_server() {
    let pg = PgServer::start();
    let mut proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    // The harness itself logs in as the superuser while setting up.
    let before = ["nobody", PG_SUPERUSER].map(|user| pg.connections_authorized(APP_DB, user));

    assert_eq!(
        login_error(&proxy, "nobody", "whatever", APP_DB).await,
        "28P01"
    );
    assert_eq!(
        login_error(&proxy, PG_SUPERUSER, "", APP_DB).await,
        "28P01",
        "a server role churnstile does not list"
    );
    let after = ["nobody", PG_SUPERUSER].map(|user| pg.connections_authorized(APP_DB, user));
    assert_eq!(after, before, "upstream logins of nobody and postgres");
    assert_eq!(after[0], 0);
    assert_proxy_healthy(&mut proxy);
    assert_logs_in(&proxy, MD5_USER.name, MD5_USER.password).await;
}

#[tokio::test]
async fn an_unknown_database_gets_3d000_and_never_reaches_the_server() {
    let pg = PgServer::start();
    let mut proxy = Proxy::start(&pg_proxy_config(&pg, ""));

    assert_eq!(
        login_error(&proxy, MD5_USER.name, MD5_USER.password, "nosuchdb").await,
        "3D000"
    );
    assert_eq!(
        login_error(&proxy, MD5_USER.name, MD5_USER.password, "postgres").await,
        "3D000",
        "a server database churnstile does not list"
    );
    for db in ["nosuchdb", "postgres", APP_DB] {
        assert_eq!(pg.connections_authorized(db, MD5_USER.name), 0, "{db}");
    }
    assert_proxy_healthy(&mut proxy);
    assert_logs_in(&proxy, MD5_USER.name, MD5_USER.password).await;
}

/// Waits for churnstile to close `connection`; returns how long after `since`.
async fn closed_after(connection: &mut RawConnection, since: Instant) -> Duration {
    assert!(
        connection.closed_within(WAIT).await,
        "connection still open {WAIT:?} later"
    );
    since.elapsed()
}

#[tokio::test]
async fn client_login_timeout_disconnects_clients_that_do_not_finish_logging_in() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, "[pool]\nclient_login_timeout = 1\n"));

    let started = Instant::now();
    let mut silent = RawConnection::connect(proxy.port()).await;
    let mut stalled = RawConnection::connect(proxy.port()).await;
    stalled.send(&raw_pg::app_startup(MD5_USER.name)).await;
    let challenge = stalled.read_message().await.unwrap();
    assert_eq!(raw_pg::auth_code(&challenge), AUTH_MD5);

    let error = silent
        .read_message()
        .await
        .expect("closed without an error message");
    assert_eq!(
        raw_pg::error_fields(&error).get(&'C').map(String::as_str),
        Some("08P01")
    );
    for (name, connection) in [("silent", &mut silent), ("stalled", &mut stalled)] {
        let elapsed = closed_after(connection, started).await;
        assert!(
            elapsed >= Duration::from_millis(900),
            "{name} client closed after only {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_secs(5),
            "{name} client closed after {elapsed:?}"
        );
    }
    let client = proxy.connect_as(MD5_USER).await;
    client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(pg.connections_authorized(APP_DB, MD5_USER.name), 1);
}

/// Sends each encryption request in `requests` on one socket, checks
/// churnstile declines each with 'N', then logs in there as `trust_user`
/// and runs a query.
async fn assert_declined_then_logs_in(proxy: &Proxy, requests: &[i32]) {
    let mut connection = RawConnection::connect(proxy.port()).await;
    for &request in requests {
        connection.send(&raw_pg::request(request, &[])).await;
        assert_eq!(connection.read_byte().await, b'N');
    }
    connection.send(&raw_pg::app_startup(TRUST_USER.name)).await;
    finish_trust_login(&mut connection).await;
    assert_query_works(&mut connection).await;
}

#[tokio::test]
async fn ssl_request_is_declined_and_the_login_continues_on_the_same_socket() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&trust_proxy_config(&pg, ""));
    assert_declined_then_logs_in(&proxy, &[raw_pg::SSL_REQUEST]).await;
}

#[tokio::test]
async fn gssenc_request_is_declined_and_the_login_continues() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&trust_proxy_config(&pg, ""));
    assert_declined_then_logs_in(&proxy, &[raw_pg::GSSENC_REQUEST, raw_pg::SSL_REQUEST]).await;
}

/// A protocol 2.0 startup packet as libpq sent it: fixed-size, NUL-padded
/// database (64), user (32), options (64), unused (64) and tty (64) fields.
fn protocol_2_startup(user: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (value, size) in [(APP_DB, 64), (user, 32), ("", 64), ("", 64), ("", 64)] {
        let mut field = value.as_bytes().to_vec();
        field.resize(size, 0);
        body.extend(field);
    }
    raw_pg::request(2 << 16, &body)
}

#[tokio::test]
async fn protocol_2_startup_is_refused_with_0a000() {
    let pg = PgServer::start();
    let mut proxy = Proxy::start(&trust_proxy_config(&pg, ""));

    for packet in [
        protocol_2_startup(TRUST_USER.name),
        raw_pg::startup_with_version(2, 0, &[("user", TRUST_USER.name)]),
        raw_pg::startup_with_version(4, 0, &[("user", TRUST_USER.name)]),
    ] {
        let mut connection = RawConnection::connect(proxy.port()).await;
        connection.send(&packet).await;
        let error = connection
            .read_message()
            .await
            .expect("closed without an error message");
        let fields = raw_pg::error_fields(&error);
        assert_eq!(fields.get(&'S').map(String::as_str), Some("FATAL"));
        assert_eq!(
            fields.get(&'C').map(String::as_str),
            Some("0A000"),
            "{fields:?}"
        );
        assert!(connection.closed_within(WAIT).await);
    }
    assert_eq!(pg.connections_authorized(APP_DB, TRUST_USER.name), 0);
    assert_proxy_healthy(&mut proxy);
}

/// NegotiateProtocolVersion's newest minor version and unrecognised options.
fn negotiation(message: &raw_pg::Message) -> (i32, Vec<String>) {
    assert_eq!(message.0, b'v', "expected NegotiateProtocolVersion");
    let body = &message.1;
    let newest_minor = i32::from_be_bytes(body[..4].try_into().unwrap());
    let count = usize::try_from(i32::from_be_bytes(body[4..8].try_into().unwrap())).unwrap();
    let names: Vec<String> = body[8..]
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect();
    assert_eq!(names.len(), count, "{names:?}");
    (newest_minor, names)
}

/// A minor version, `_pq_.` parameters sent, and the names churnstile
/// should report as unrecognised.
type NegotiationCase = (
    u16,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

#[tokio::test]
async fn newer_minor_versions_and_pq_options_are_negotiated_down_to_3_0() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&trust_proxy_config(&pg, ""));
    let cases: [NegotiationCase; 3] = [
        (1, &[], &[]),
        (0, &[("_pq_.x", "on")], &["_pq_.x"]),
        (
            2,
            &[("_pq_.a", "1"), ("_pq_.b", "2")],
            &["_pq_.a", "_pq_.b"],
        ),
    ];

    for (minor, extra, unrecognised) in cases {
        let mut params = vec![("user", TRUST_USER.name), ("database", APP_DB)];
        params.extend_from_slice(extra);
        let mut connection = RawConnection::connect(proxy.port()).await;
        connection
            .send(&raw_pg::startup_with_version(3, minor, &params))
            .await;
        let first = connection.read_message().await.unwrap();
        let (newest_minor, names) = negotiation(&first);
        assert_eq!(newest_minor, 0, "3.{minor} {extra:?}");
        assert_eq!(names, unrecognised, "3.{minor} {extra:?}");
        finish_trust_login(&mut connection).await;
        assert_query_works(&mut connection).await;
    }

    let mut plain = RawConnection::connect(proxy.port()).await;
    plain.send(&raw_pg::app_startup(TRUST_USER.name)).await;
    let first = plain.read_message().await.unwrap();
    assert_eq!(
        raw_pg::auth_code(&first),
        AUTH_OK,
        "3.0 needs no negotiation"
    );
}

#[tokio::test]
async fn oversized_startup_and_password_packets_get_08p01_without_allocation() {
    let pg = PgServer::start();
    let mut proxy = Proxy::start(&pg_proxy_config(&pg, ""));

    let mut huge_startup = RawConnection::connect(proxy.port()).await;
    huge_startup.send(&0x7fff_ffffu32.to_be_bytes()).await;
    huge_startup
        .send(&raw_pg::app_startup(MD5_USER.name)[4..])
        .await;
    let error = huge_startup.read_message().await.unwrap();
    assert_eq!(
        raw_pg::error_fields(&error).get(&'C').map(String::as_str),
        Some("08P01")
    );
    assert!(huge_startup.closed_within(WAIT).await);

    let mut huge_password = RawConnection::connect(proxy.port()).await;
    huge_password
        .send(&raw_pg::app_startup(MD5_USER.name))
        .await;
    let challenge = huge_password.read_message().await.unwrap();
    assert_eq!(raw_pg::auth_code(&challenge), AUTH_MD5);
    let mut password = vec![b'p'];
    password.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    password.extend_from_slice(b"md5");
    huge_password.send(&password).await;
    let error = huge_password.read_message().await.unwrap();
    assert_eq!(
        raw_pg::error_fields(&error).get(&'C').map(String::as_str),
        Some("08P01")
    );
    assert!(huge_password.closed_within(WAIT).await);

    let peak_kb = proxy.rss_peak_kb();
    assert!(peak_kb < 40 * 1024, "peak RSS {peak_kb} KiB");
    assert_proxy_healthy(&mut proxy);
    assert_logs_in(&proxy, MD5_USER.name, MD5_USER.password).await;
}

#[tokio::test]
async fn zero_config_mode_serves_the_upstream_urls_credentials() {
    let pg = PgServer::start();
    let mut proxy = Proxy::start_zero_config(&pg.url(MD5_USER), &[]);

    let (code, _) = first_auth_request(&proxy, MD5_USER.name).await;
    assert_eq!(code, AUTH_MD5);
    let client = proxy.connect_as(MD5_USER).await;
    let row = client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), MD5_USER.name);
    assert_eq!(row.get::<_, String>(1), APP_DB);

    assert_eq!(
        login_error(&proxy, MD5_USER.name, "wrong", APP_DB).await,
        "28P01"
    );
    assert_eq!(
        login_error(&proxy, SCRAM_USER.name, SCRAM_USER.password, APP_DB).await,
        "28P01",
        "only the URL's user is served"
    );
    assert_eq!(pg.connections_authorized(APP_DB, MD5_USER.name), 1);
    assert_eq!(pg.connections_authorized(APP_DB, SCRAM_USER.name), 0);
    assert_proxy_healthy(&mut proxy);
}

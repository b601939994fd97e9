//! TLS on both legs: certificates made at test time by a throwaway CA,
//! `check-config` and startup naming a bad file with its line, PostgreSQL
//! clients over TLS to churnstile (SSLRequest and direct TLS, client
//! certificates, plaintext refused under `require`), and churnstile over
//! TLS to a `hostssl`-only PostgreSQL.

mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use churnstile::tls::{ServerVerification, TlsVersions, connector, load_roots};
use mysql_async::prelude::Queryable;
use rustls_pki_types::ServerName;
use support::admin_console;
use support::mysql_client;
use support::postgres::ServerTls;
use support::raw_pg::{self, RawConnection};
use support::test_pki::TestPki;
use support::{
    APP_DB, MD5_USER, MYSQL_APP_USER, MariaDbServer, PgServer, Proxy, SCRAM_USER,
    mysql_proxy_config_with, pg_client, pg_proxy_config, tls_client, wait,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// `[pool]` TLS to the servers under verify-full, trusting `pki`'s CA.
fn verify_full_upstream(pki: &TestPki) -> String {
    format!(
        "[pool]\nserver_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = {}\n",
        quoted(&pki.ca())
    )
}

#[test]
fn check_config_names_each_tls_file_mistake_at_its_line() {
    let pki = TestPki::new();
    let server = pki.server("server", &["localhost"]);
    let other = pki.server("other", &["localhost"]);
    let expired = pki.expired("expired");
    let path = pki.dir().join("churnstile.toml");
    fs::write(
        &path,
        format!(
            "[general]\n\
             client_tls_sslmode = \"verify-full\"\n\
             client_tls_cert_file = {}\n\
             client_tls_key_file = {}\n\
             [pool]\n\
             server_tls_cert_file = {}\n\
             server_tls_key_file = {}\n\
             [databases.app]\n\
             server_tls_ca_file = \"/nonexistent/ca.pem\"\n",
            quoted(&server.cert),
            quoted(&other.key),
            quoted(&expired.cert),
            quoted(&expired.key),
        ),
    )
    .unwrap();
    let file = path.display().to_string();

    let exit = Proxy::spawn_expect_exit(&["check-config", &file]);

    assert_eq!(exit.code, 2, "stderr:\n{}", exit.stderr);
    let lines: Vec<&str> = exit.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(
        lines[0],
        format!(
            "{file}:2:22: general.client_tls_sslmode: client_tls_sslmode = \"verify-full\" \
             needs client_tls_ca_file, the CA that issues client certificates"
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "{file}:4:23: general.client_tls_key_file: {} does not match the certificate in {}; \
             give the key the certificate was issued for",
            other.key.display(),
            server.cert.display()
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "{file}:6:24: pool.server_tls_cert_file: {}: the certificate expired on \
             2021-01-01 00:00:00 UTC; renew it",
            expired.cert.display()
        )
    );
    assert_eq!(
        lines[3],
        format!(
            "{file}:9:22: databases.app.server_tls_ca_file: cannot read /nonexistent/ca.pem: \
             No such file or directory (os error 2)"
        )
    );
}

#[test]
fn startup_with_an_expired_certificate_fails_with_one_line_naming_it() {
    let pki = TestPki::new();
    let expired = pki.expired("expired");
    let path = pki.dir().join("churnstile.toml");
    fs::write(
        &path,
        format!(
            "[listen]\npostgres = [\"127.0.0.1:0\"]\nunix_socket_dir = \"\"\n\
             [general]\nclient_tls_sslmode = \"require\"\n\
             client_tls_cert_file = {}\nclient_tls_key_file = {}\n\
             [databases.app]\n[users.a]\npassword = \"x\"\n",
            quoted(&expired.cert),
            quoted(&expired.key),
        ),
    )
    .unwrap();
    let file = path.display().to_string();

    let exit = Proxy::spawn_expect_exit(&["--config", &file]);

    assert_eq!(exit.code, 2, "stderr:\n{}", exit.stderr);
    assert_eq!(
        exit.stderr.trim_end(),
        format!(
            "{file}:6:24: general.client_tls_cert_file: {}: the certificate expired on \
             2021-01-01 00:00:00 UTC; renew it",
            expired.cert.display()
        )
    );
}

#[tokio::test]
async fn the_harness_serves_tls_and_hostssl_refuses_plaintext_logins() {
    let pki = TestPki::new();
    let certificate = pki.server("postgres", &["localhost", "127.0.0.1"]);
    let pg = PgServer::builder()
        .tls(ServerTls {
            cert: certificate.cert.clone(),
            key: certificate.key.clone(),
            hostssl_only: true,
        })
        .start();
    let connection_string = pg.connection_string(MD5_USER.name, MD5_USER.password, "app");

    let plaintext = pg_client::connect(&connection_string).await.unwrap_err();
    assert_eq!(pg_client::sqlstate(&plaintext), "28000");
    let message = plaintext.as_db_error().unwrap().message();
    assert!(message.ends_with("no encryption"), "{message}");

    let over_tls = connection_string.replace("sslmode=disable", "sslmode=require");
    let client = tls_client::connect(&over_tls, tls_client::verify_full(&pki.ca(), None))
        .await
        .unwrap();
    let ssl = pg_client::scalar(
        &client,
        "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(ssl, "true");
}

/// A churnstile for `pg` accepting clients over TLS with a certificate for
/// 127.0.0.1 and localhost from `pki`, under `sslmode`.
fn tls_proxy(pg: &PgServer, pki: &TestPki, sslmode: &str, extra: &str) -> Proxy {
    let certificate = pki.server("churnstile", &["localhost", "127.0.0.1"]);
    Proxy::start(&pg_proxy_config(
        pg,
        &format!(
            "[general]\nclient_tls_sslmode = \"{sslmode}\"\nclient_tls_cert_file = {}\n\
             client_tls_key_file = {}\n{extra}",
            quoted(&certificate.cert),
            quoted(&certificate.key),
        ),
    ))
}

#[tokio::test]
async fn postgres_clients_log_in_over_tls_verifying_churnstile_and_plaintext_is_refused() {
    let pg = PgServer::start();
    let pki = TestPki::new();
    let proxy = tls_proxy(&pg, &pki, "require", "");
    let plaintext = proxy.connection_string(MD5_USER.name, MD5_USER.password, APP_DB);
    let over_tls = plaintext.replace("sslmode=disable", "sslmode=require");

    let client = tls_client::connect(&over_tls, tls_client::verify_full(&pki.ca(), None))
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", proxy.stderr()));
    assert_eq!(
        pg_client::scalar(&client, "SELECT 'over tls'").await,
        "over tls"
    );

    let refused = pg_client::connect(&plaintext).await.unwrap_err();
    let refused = refused.as_db_error().unwrap();
    assert_eq!(refused.code().code(), "28000");
    assert_eq!(
        refused.message(),
        "TLS is required (client_tls_sslmode = \"require\"); connect with sslmode=require \
         or stricter"
    );
}

#[tokio::test]
async fn a_client_trusting_another_ca_refuses_churnstile() {
    let pg = PgServer::start();
    let (pki, other) = (TestPki::new(), TestPki::new());
    let proxy = tls_proxy(&pg, &pki, "prefer", "");
    let over_tls = proxy
        .connection_string(MD5_USER.name, MD5_USER.password, APP_DB)
        .replace("sslmode=disable", "sslmode=require");
    let error = tls_client::connect(&over_tls, tls_client::verify_full(&other.ca(), None))
        .await
        .unwrap_err();
    assert!(
        format!("{error:?}").contains("InvalidCertificate"),
        "{error:?}"
    );
    // prefer: a plaintext client is still served.
    let client = proxy.connect_as(MD5_USER).await;
    assert_eq!(pg_client::scalar(&client, "SELECT 'plain'").await, "plain");
}

#[tokio::test]
async fn verify_full_clients_need_a_certificate_from_the_client_ca() {
    let pg = PgServer::start();
    let pki = TestPki::new();
    let proxy = tls_proxy(
        &pg,
        &pki,
        "verify-full",
        &format!("client_tls_ca_file = {}\n", quoted(&pki.ca())),
    );
    let over_tls = proxy
        .connection_string(MD5_USER.name, MD5_USER.password, APP_DB)
        .replace("sslmode=disable", "sslmode=require");
    let without = tls_client::connect(&over_tls, tls_client::verify_full(&pki.ca(), None)).await;
    assert!(without.is_err(), "logged in without a client certificate");
    let certificate = pki.client("md5_user", MD5_USER.name);
    let with = tls_client::verify_full(&pki.ca(), Some(&certificate));
    let client = tls_client::connect(&over_tls, with)
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", proxy.stderr()));
    assert_eq!(
        pg_client::scalar(&client, "SELECT 'certified'").await,
        "certified"
    );
}

#[tokio::test]
async fn direct_tls_with_alpn_postgresql_is_accepted() {
    let pg = PgServer::start();
    let pki = TestPki::new();
    let proxy = tls_proxy(&pg, &pki, "require", "");
    let roots = Arc::new(load_roots(&pki.ca()).unwrap());
    let alpn: &[&[u8]] = &[b"postgresql"];
    let config = connector(
        &ServerVerification::ChainAndName(roots),
        None,
        TlsVersions::default(),
        alpn,
    )
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", proxy.port()))
        .await
        .unwrap();
    let mut tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(&raw_pg::app_startup(MD5_USER.name))
        .await
        .unwrap();
    let first = raw_pg::read_message_from(&mut tls).await.unwrap();
    assert_eq!(first.0, b'R', "{first:?}; stderr:\n{}", proxy.stderr());
    assert_eq!(raw_pg::auth_code(&first), raw_pg::AUTH_MD5);
}

#[tokio::test]
async fn data_sent_after_ssl_request_before_the_handshake_is_refused() {
    let pg = PgServer::start();
    let pki = TestPki::new();
    let proxy = tls_proxy(&pg, &pki, "prefer", "");
    let mut raw = RawConnection::connect(proxy.port()).await;
    let mut injected = raw_pg::request(raw_pg::SSL_REQUEST, &[]);
    injected.extend_from_slice(&raw_pg::app_startup(MD5_USER.name));
    raw.send(&injected).await;
    let error = raw.expect_message().await;
    assert_eq!(
        raw_pg::error_fields(&error).get(&'M').map(String::as_str),
        Some("received unencrypted data after encryption request")
    );
    // GSSENCRequest is declined, as before.
    let mut raw = RawConnection::connect(proxy.port()).await;
    raw.send(&raw_pg::request(raw_pg::GSSENC_REQUEST, &[]))
        .await;
    assert_eq!(raw.read_byte().await, b'N');
}

#[tokio::test]
async fn garbage_instead_of_a_client_hello_is_closed_and_churnstile_keeps_serving() {
    let pg = PgServer::start();
    let pki = TestPki::new();
    let proxy = tls_proxy(&pg, &pki, "require", "");
    let fds_before = proxy.fd_count();
    for _ in 0..20 {
        let mut raw = RawConnection::connect(proxy.port()).await;
        raw.send(&raw_pg::request(raw_pg::SSL_REQUEST, &[])).await;
        assert_eq!(raw.read_byte().await, b'S');
        raw.send(b"\x16\x03\x01\x00\x05hello, not TLS at all").await;
        // An alert at most, then the close.
        assert!(raw.read_message().await.is_none_or(|(tag, _)| tag == 0x15));
    }
    // Generous: on a loaded 2-core host the closes may lag the test.
    let settle = std::time::Duration::from_secs(20);
    // At most the count before: a connection the harness opened to see
    // churnstile start may close meanwhile, one per garbage client must.
    wait::eventually(
        "churnstile's open fds back to at most the count before",
        settle,
        async || proxy.fd_count() <= fds_before,
    )
    .await;
    let over_tls = proxy
        .connection_string(MD5_USER.name, MD5_USER.password, APP_DB)
        .replace("sslmode=disable", "sslmode=require");
    let client = tls_client::connect(&over_tls, tls_client::verify_full(&pki.ca(), None))
        .await
        .unwrap();
    assert_eq!(
        pg_client::scalar(&client, "SELECT 'still here'").await,
        "still here"
    );
}

/// A PostgreSQL with `ssl = on` whose pg_hba has only `hostssl` lines for
/// the test roles, with a certificate for `names` from `pki`.
fn hostssl_server(pki: &TestPki, names: &[&str]) -> PgServer {
    let certificate = pki.server("postgres", names);
    PgServer::builder()
        .tls(ServerTls {
            cert: certificate.cert,
            key: certificate.key,
            hostssl_only: true,
        })
        .start()
}

#[tokio::test]
async fn churnstile_logs_in_over_tls_to_a_hostssl_only_server_under_verify_full() {
    let pki = TestPki::new();
    let pg = hostssl_server(&pki, &["localhost", "127.0.0.1"]);
    let proxy = Proxy::start(&pg_proxy_config(&pg, &verify_full_upstream(&pki)));
    let client = proxy.connect_as(MD5_USER).await;
    let ssl = pg_client::scalar(
        &client,
        "SELECT ssl::text || ' ' || version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(ssl, "true TLSv1.3");
}

#[tokio::test]
async fn verify_full_refuses_a_server_certificate_for_another_name_and_the_client_sees_why() {
    let pki = TestPki::new();
    let pg = hostssl_server(&pki, &["db.example.internal"]);
    let proxy = Proxy::start(&pg_proxy_config(&pg, &verify_full_upstream(&pki)));
    let error = proxy
        .try_connect(MD5_USER.name, MD5_USER.password, APP_DB)
        .await
        .unwrap_err();
    let error = error.as_db_error().unwrap();
    assert_eq!(error.code().code(), "08006");
    assert!(
        error
            .message()
            .contains("server_tls_sslmode = \"verify-full\"")
            && error.message().contains("not valid for name"),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn require_refuses_a_server_without_tls_and_the_client_sees_why() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        "[pool]\nserver_tls_sslmode = \"require\"\n",
    ));
    let error = proxy
        .try_connect(MD5_USER.name, MD5_USER.password, APP_DB)
        .await
        .unwrap_err();
    let error = error.as_db_error().unwrap();
    assert_eq!(error.code().code(), "08006");
    assert_eq!(
        error.message(),
        format!(
            "could not connect to the server: 127.0.0.1:{} does not accept TLS (it answered 'N' to SSLRequest) and \
             server_tls_sslmode = \"require\" requires it; enable ssl on the server or set \
             server_tls_sslmode = \"prefer\"",
            pg.port()
        )
    );
}

#[tokio::test]
async fn show_clients_and_show_servers_fill_the_tls_column() {
    let pki = TestPki::new();
    let pg = hostssl_server(&pki, &["localhost", "127.0.0.1"]);
    let proxy = tls_proxy(
        &pg,
        &pki,
        "prefer",
        &format!(
            "admin_users = [\"plain_user\"]\n[pool]\nserver_tls_sslmode = \"verify-full\"\n\
             server_tls_ca_file = {}\n",
            quoted(&pki.ca())
        ),
    );
    let over_tls = proxy
        .connection_string(MD5_USER.name, MD5_USER.password, APP_DB)
        .replace("sslmode=disable", "sslmode=require");
    let client = tls_client::connect(&over_tls, tls_client::verify_full(&pki.ca(), None))
        .await
        .unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    let plaintext = proxy.connect_as(SCRAM_USER).await;
    plaintext.batch_execute("BEGIN").await.unwrap();
    let admin = admin_console::admin(&proxy).await;

    let clients = admin_console::rows(&admin, "SHOW CLIENTS").await;
    let tls_of = |user: &str| -> Vec<String> {
        (clients.iter())
            .filter(|row| row["user"] == user)
            .map(|row| row["tls"].clone())
            .collect()
    };
    assert_eq!(tls_of(MD5_USER.name), ["TLSv1.3"]);
    assert_eq!(tls_of(SCRAM_USER.name), [""]);
    let servers = admin_console::rows(&admin, "SHOW SERVERS").await;
    let server_tls: Vec<&str> = servers.iter().map(|row| row["tls"].as_str()).collect();
    // Both clients' server connections are TLS: the leg to the server is
    // its own.
    assert_eq!(server_tls, ["TLSv1.3", "TLSv1.3"]);
}

/// A MariaDB that serves TLS with a certificate for `names` from `pki` and
/// refuses plaintext TCP logins (`require_secure_transport = ON`).
fn secure_transport_mariadb(pki: &TestPki, names: &[&str]) -> MariaDbServer {
    let certificate = pki.server("mariadb", names);
    MariaDbServer::builder()
        .option(&format!("--ssl-cert={}", certificate.cert.display()))
        .option(&format!("--ssl-key={}", certificate.key.display()))
        .option("--require-secure-transport=ON")
        .start()
}

#[tokio::test]
async fn churnstile_logs_in_over_tls_to_a_mariadb_requiring_secure_transport() {
    let pki = TestPki::new();
    let maria = secure_transport_mariadb(&pki, &["localhost", "127.0.0.1"]);
    let proxy = Proxy::start(&mysql_proxy_config_with(
        &maria,
        "session",
        2,
        &verify_full_upstream(&pki),
    ));
    let mut conn = mysql_client::connect(&proxy, MYSQL_APP_USER).await;
    let cipher = mysql_client::first_row(&mut conn, "SHOW SESSION STATUS LIKE 'Ssl_version'").await;
    assert_eq!(cipher, ["Ssl_version", "TLSv1.3"]);
}

#[tokio::test]
async fn require_refuses_a_mariadb_without_tls_and_the_client_sees_why() {
    let maria = MariaDbServer::builder().option("--skip-ssl").start();
    let proxy = Proxy::start(&mysql_proxy_config_with(
        &maria,
        "session",
        2,
        "[pool]\nserver_tls_sslmode = \"require\"\n",
    ));
    // The login to churnstile may come before any server connection; the
    // first statement needs one at the latest.
    let error =
        match mysql_client::try_connect(mysql_client::proxy_opts(&proxy, MYSQL_APP_USER)).await {
            Err(error) => error,
            Ok(mut conn) => conn.query_drop("SELECT 1").await.unwrap_err(),
        };
    let message = mysql_client::error_message(&error);
    assert!(
        message.contains("does not offer TLS") && message.contains("ssl-mode REQUIRED"),
        "{message}"
    );
}

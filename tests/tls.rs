//! TLS on both legs: certificates made at test time by a throwaway CA,
//! `check-config` and startup naming a bad file with its line, and the
//! test harness's PostgreSQL serving TLS with `hostssl`-only pg_hba.

mod support;

use std::fs;
use std::path::Path;

use support::postgres::ServerTls;
use support::test_pki::TestPki;
use support::{MD5_USER, PgServer, Proxy, pg_client, tls_client};

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
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

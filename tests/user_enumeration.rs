//! Logins tell an attacker nothing about which user names exist: an
//! unknown user, a server's user churnstile does not list and a known user
//! with a wrong password get the same challenge and the same error, on
//! both protocols. On PostgreSQL the unknown user's challenge is a mock
//! (with a SCRAM salt stable across attempts, as a real verifier's is).

mod support;

use std::collections::BTreeMap;

use support::mysql_client::{error_code, error_message, tcp_opts, try_connect};
use support::pg_client::sqlstate;
use support::raw_pg::{self, AUTH_MD5, AUTH_SASL, RawConnection};
use support::{
    APP_DB, MD5_USER, MariaDbServer, NATIVE_USER, PgServer, Proxy, SCRAM_USER, TRUST_USER,
    mysql_proxy_config_with, pg_proxy_config,
};

const SASL_CONTINUE: i32 = 11;

/// The AuthenticationRequest code churnstile answers `user`'s startup with.
async fn first_auth_request(proxy: &Proxy, user: &str) -> i32 {
    let mut connection = RawConnection::connect(proxy.port()).await;
    connection.send(&raw_pg::app_startup(user)).await;
    let message = connection.expect_message().await;
    raw_pg::auth_code(&message)
}

/// SQLSTATE and message of a login through the proxy that must fail.
async fn refusal(proxy: &Proxy, user: &str, password: &str) -> (String, String) {
    let error = proxy
        .try_connect(user, password, APP_DB)
        .await
        .err()
        .unwrap_or_else(|| panic!("{user} logged in with password {password:?}"));
    let message = error.as_db_error().map(|db| db.message().to_owned());
    (sqlstate(&error).to_owned(), message.unwrap_or_default())
}

fn password_failed(user: &str) -> (String, String) {
    (
        "28P01".to_owned(),
        format!("password authentication failed for user \"{user}\""),
    )
}

#[tokio::test]
async fn with_md5_unknown_users_server_roles_not_listed_and_wrong_passwords_look_alike() {
    let pg = PgServer::start();
    // trust_user is a role of the server, not a user of churnstile's.
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));
    for (user, password) in [
        (MD5_USER.name, "wrong"),
        ("nobody", "whatever"),
        (TRUST_USER.name, "whatever"),
    ] {
        assert_eq!(first_auth_request(&proxy, user).await, AUTH_MD5, "{user}");
        assert_eq!(refusal(&proxy, user, password).await, password_failed(user));
    }
    assert_eq!(pg.connections_authorized(APP_DB, "nobody"), 0);
}

/// What a hand-made SCRAM exchange as `user` with a wrong proof shows: the
/// salt and iteration count of server-first-message, and the error fields.
async fn scram_with_a_wrong_proof(
    proxy: &Proxy,
    user: &str,
) -> (String, String, BTreeMap<char, String>) {
    let mut connection = RawConnection::connect(proxy.port()).await;
    connection.send(&raw_pg::app_startup(user)).await;
    assert_eq!(
        raw_pg::auth_code(&connection.expect_message().await),
        AUTH_SASL
    );
    let client_first = b"n,,n=,r=clientnonce";
    let mut initial = b"SCRAM-SHA-256\0".to_vec();
    initial.extend_from_slice(&(client_first.len() as i32).to_be_bytes());
    initial.extend_from_slice(client_first);
    connection.send(&raw_pg::message(b'p', &initial)).await;
    let server_first = connection.expect_message().await;
    assert_eq!(raw_pg::auth_code(&server_first), SASL_CONTINUE);
    let server_first = String::from_utf8(server_first.1[4..].to_vec()).unwrap();
    let attribute = |name: &str| {
        server_first
            .split(',')
            .find_map(|field| field.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {server_first:?}"))
            .to_owned()
    };
    let (nonce, salt, iterations) = (attribute("r="), attribute("s="), attribute("i="));
    let wrong_proof = format!("{}=", "A".repeat(43));
    let client_final = format!("c=biws,r={nonce},p={wrong_proof}");
    connection
        .send(&raw_pg::message(b'p', client_final.as_bytes()))
        .await;
    let error = connection.expect_message().await;
    assert_eq!(error.0, b'E', "{error:?}");
    (salt, iterations, raw_pg::error_fields(&error))
}

#[tokio::test]
async fn with_scram_an_unknown_user_gets_a_stable_mock_challenge_and_the_wrong_password_error() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(
        &pg,
        "[general]\nauth_type = \"scram-sha-256\"\n",
    ));
    for user in [SCRAM_USER.name, "nobody"] {
        let (salt, iterations, fields) = scram_with_a_wrong_proof(&proxy, user).await;
        let (again, _, _) = scram_with_a_wrong_proof(&proxy, user).await;
        assert_eq!(salt, again, "{user}'s salt changed between attempts");
        assert_eq!(salt.len(), 24, "16 bytes in base64: {salt}");
        assert_eq!(iterations, "4096");
        assert_eq!(fields[&'C'], "28P01");
        assert_eq!(fields[&'M'], password_failed(user).1);
        assert_eq!(refusal(&proxy, user, "wrong").await, password_failed(user));
    }
    let (nobody, _, _) = scram_with_a_wrong_proof(&proxy, "nobody").await;
    let (somebody, _, _) = scram_with_a_wrong_proof(&proxy, "somebody").await;
    assert_ne!(nobody, somebody, "every unknown name has its own salt");
}

#[tokio::test]
async fn on_mysql_unknown_users_and_wrong_passwords_both_get_1045() {
    let maria = MariaDbServer::start();
    for plugin in ["mysql_native_password", "caching_sha2_password"] {
        let proxy = Proxy::start(&mysql_proxy_config_with(
            &maria,
            "transaction",
            2,
            &format!("[general]\nmysql_auth_plugin = \"{plugin}\"\n"),
        ));
        // NATIVE_USER is a MariaDB account, but not a user of churnstile's.
        for (user, password) in [
            ("appuser", "wrong"),
            ("nobody", "whatever"),
            (NATIVE_USER.name, NATIVE_USER.password),
        ] {
            let opts = tcp_opts(proxy.mysql_port(), user, password, Some(APP_DB));
            let error = try_connect(opts).await.expect_err("logged in");
            assert_eq!(error_code(&error), 1045, "{plugin}, {user}: {error}");
            assert_eq!(
                error_message(&error),
                format!("Access denied for user '{user}'@'127.0.0.1' (using password: YES)"),
                "{plugin}"
            );
        }
    }
}

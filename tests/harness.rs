//! Tests of the test harness itself: throwaway PostgreSQL and MariaDB
//! servers start, authenticate each test account, survive restarts and
//! leave nothing behind.

mod support;

use std::time::{Duration, Instant};

use support::child::pid_alive;
use support::pg_client::query_i64;
use support::wait::eventually;
use support::{
    APP_DB, MD5_USER, MariaDbServer, NATIVE_USER, PG_SUPERUSER, PG_USERS, PLAIN_USER, PgServer,
    SCRAM_USER,
};
use tokio_postgres::error::SqlState;

/// Dropped servers are reaped at once; allow a moment for the kernel anyway.
fn gone_within(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[tokio::test]
async fn each_postgres_user_logs_in_with_its_own_method() {
    let pg = PgServer::start();
    for user in PG_USERS {
        let client = pg.client(user.name, APP_DB).await;
        let row = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), user.name);
    }
    // Password methods log which one authenticated the session.
    let log = pg.log();
    for user in [MD5_USER, SCRAM_USER, PLAIN_USER] {
        let line = format!("identity=\"{}\" method={}", user.name, user.method);
        assert!(log.contains(&line), "no `{line}` in the server log:\n{log}");
    }
    let md5_stored = pg
        .query_i64(
            "SELECT count(*) FROM pg_authid WHERE rolname = 'md5_user' AND rolpassword LIKE 'md5%'",
        )
        .await;
    assert_eq!(
        md5_stored, 1,
        "md5_user's password is stored as an MD5 hash"
    );
}

#[tokio::test]
async fn a_wrong_password_fails_with_28p01() {
    let pg = PgServer::start();
    for user in [MD5_USER, SCRAM_USER, PLAIN_USER] {
        let error = pg
            .try_client(user.name, "wrong", APP_DB)
            .await
            .err()
            .unwrap_or_else(|| panic!("{} logged in with a wrong password", user.name));
        assert_eq!(
            error.code(),
            Some(&SqlState::INVALID_PASSWORD),
            "{}: {error}",
            user.name
        );
    }
}

#[tokio::test]
async fn test_users_can_create_and_share_tables_in_app() {
    let pg = PgServer::start();
    let owner = pg.client(MD5_USER.name, APP_DB).await;
    owner
        .batch_execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('hi')")
        .await
        .unwrap();
    let superuser = pg.client(PG_SUPERUSER, APP_DB).await;
    assert_eq!(query_i64(&superuser, "SELECT count(*) FROM notes").await, 1);
}

#[tokio::test]
async fn restart_keeps_data_and_port() {
    let mut pg = PgServer::start();
    let port = pg.port();
    let client = pg.client(PG_SUPERUSER, APP_DB).await;
    client
        .batch_execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (1), (2)")
        .await
        .unwrap();
    let old_pid = pg.pid();

    pg.restart();

    assert_eq!(pg.port(), port);
    assert_ne!(pg.pid(), old_pid);
    assert!(
        client.simple_query("SELECT 1").await.is_err(),
        "a session from before the restart still works"
    );
    let client = pg.client(PG_SUPERUSER, APP_DB).await;
    assert_eq!(query_i64(&client, "SELECT count(*) FROM kept").await, 2);
}

#[tokio::test]
async fn backend_and_session_counts_follow_connections() {
    let pg = PgServer::start();
    assert_eq!(pg.backends(APP_DB, SCRAM_USER.name).await, 0);
    let first = pg.client(SCRAM_USER.name, APP_DB).await;
    let second = pg.client(SCRAM_USER.name, APP_DB).await;
    assert_eq!(pg.backends(APP_DB, SCRAM_USER.name).await, 2);
    assert_eq!(pg.connections_authorized(APP_DB, SCRAM_USER.name), 2);
    drop((first, second));

    // Statistics lag; the exact count above is what tests should rely on.
    eventually(
        "pg_stat_database.sessions reaching 2",
        Duration::from_secs(15),
        async || pg.sessions_opened(APP_DB).await >= 2,
    )
    .await;
}

#[test]
fn two_servers_at_once_get_different_ports_and_vanish_when_dropped() {
    let first = PgServer::start();
    let second = PgServer::start();
    assert_ne!(first.port(), second.port());
    assert_ne!(first.socket_dir(), second.socket_dir());

    let pids = [first.pid(), second.pid()];
    let dirs = [first.data_dir(), second.data_dir()];
    drop((first, second));

    for (pid, dir) in pids.into_iter().zip(dirs) {
        assert!(
            gone_within(pid, Duration::from_secs(5)),
            "postmaster {pid} outlived its PgServer"
        );
        assert!(!dir.exists(), "{} outlived its PgServer", dir.display());
    }
}

#[test]
fn mariadb_server_serves_native_user_and_vanishes_when_dropped() {
    let mariadb = MariaDbServer::start();
    let rows = mariadb
        .query_as(
            NATIVE_USER.name,
            NATIVE_USER.password,
            Some(APP_DB),
            "CREATE TABLE t (n INT); INSERT INTO t VALUES (7); SELECT n FROM t",
        )
        .unwrap_or_else(|e| panic!("native_user query failed: {e}"));
    assert_eq!(rows, "7");
    let plugin = mariadb.query("SELECT plugin FROM mysql.user WHERE user = 'native_user'");
    assert_eq!(plugin, "mysql_native_password");
    assert!(
        mariadb
            .query_as(NATIVE_USER.name, "wrong", None, "SELECT 1")
            .is_err_and(|e| e.contains("1045")),
        "native_user logged in with a wrong password"
    );

    let before = mariadb.connections_total();
    mariadb
        .query_as(NATIVE_USER.name, NATIVE_USER.password, None, "SELECT 1")
        .unwrap();
    // The connection above and the one asking.
    assert_eq!(mariadb.connections_total(), before + 2);

    let pid = mariadb.pid();
    let dir = mariadb.data_dir();
    drop(mariadb);
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "mariadbd {pid} outlived its MariaDbServer"
    );
    assert!(
        !dir.exists(),
        "{} outlived its MariaDbServer",
        dir.display()
    );
}

#[test]
fn mariadb_restart_keeps_data_and_port() {
    let mut mariadb = MariaDbServer::start();
    let port = mariadb.port();
    mariadb.query("CREATE TABLE app.kept (n INT); INSERT INTO app.kept VALUES (1), (2)");

    mariadb.restart();

    assert_eq!(mariadb.port(), port);
    assert_eq!(mariadb.query("SELECT count(*) FROM app.kept"), "2");
}

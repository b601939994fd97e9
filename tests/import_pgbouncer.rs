//! `churnstile import-pgbouncer`: Debian's shipped pgbouncer.ini, a
//! transaction-mode production file with several databases and auth_query,
//! and a file split with %include are converted; every setting left behind
//! is listed with its place and reason, the exit status says whether any
//! was, the result passes check-config, and an imported configuration
//! serves a client against a real PostgreSQL.

mod support;

use std::path::{Path, PathBuf};

use support::pg_client::scalar;
use support::{PLAIN_USER, PgServer, ProcessExit, Proxy, free_port};

/// Exit statuses `import-pgbouncer` promises.
const NOTHING_DROPPED: i32 = 0;
const INVALID: i32 = 2;
const SOMETHING_DROPPED: i32 = 3;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pgbouncer")
        .join(name)
}

/// Runs the import of `ini` into `dir/churnstile.toml`; the TOML written.
fn import(ini: &Path, dir: &Path) -> (ProcessExit, String) {
    let out = dir.join("churnstile.toml");
    let exit = Proxy::spawn_expect_exit(&[
        "import-pgbouncer",
        ini.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let toml = std::fs::read_to_string(&out).unwrap_or_default();
    (exit, toml)
}

fn check_config(toml: &Path) -> ProcessExit {
    Proxy::spawn_expect_exit(&["check-config", toml.to_str().unwrap()])
}

/// The `[section] key` part of each stderr line about a dropped setting,
/// with the line number it names.
fn dropped(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|line| line.contains(": not carried over: "))
        .map(|line| {
            let (place, rest) = line.split_once(": [").unwrap();
            let line_number = place.rsplit(':').next().unwrap();
            let what = rest.split(": not carried over").next().unwrap();
            format!("{line_number} [{what}")
        })
        .collect()
}

/// Debian's file with its userlist path pointed at `userlist` (so the test
/// does not depend on /etc), optionally with the commented example
/// database `bardb` switched on.
fn debian_copy(dir: &Path, with_bardb: bool) -> PathBuf {
    let userlist = dir.join("userlist.txt");
    std::fs::write(&userlist, "\"someone\" \"pw\"\n").unwrap();
    let mut text = std::fs::read_to_string(fixture("debian.ini"))
        .unwrap()
        .replace("/etc/pgbouncer/userlist.txt", userlist.to_str().unwrap());
    if with_bardb {
        text = text.replace(";bardb = ", "bardb = ");
    }
    let path = dir.join("pgbouncer.ini");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn debian_default_has_no_database_so_the_result_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (exit, toml) = import(&debian_copy(dir.path(), false), dir.path());
    assert_eq!(exit.code, INVALID, "{}", exit.stderr);
    assert_eq!(
        dropped(&exit.stderr),
        ["45 [pgbouncer] logfile", "46 [pgbouncer] pidfile"]
    );
    assert!(
        exit.stderr.contains("databases: no [databases] defined"),
        "{}",
        exit.stderr
    );
    assert!(
        toml.contains("postgres = [\"127.0.0.1:6432\"]\nunix_socket_dir = \"/var/run/postgresql\""),
        "{toml}"
    );
}

#[test]
fn debian_default_with_a_database_imports_and_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let (exit, toml) = import(&debian_copy(dir.path(), true), dir.path());
    assert_eq!(exit.code, SOMETHING_DROPPED, "{}", exit.stderr);
    assert_eq!(
        dropped(&exit.stderr),
        ["45 [pgbouncer] logfile", "46 [pgbouncer] pidfile"]
    );
    assert!(
        toml.contains("[general]\nauth_type = \"md5\"\nauth_file = \""),
        "{toml}"
    );
    assert!(
        toml.contains("[databases.bardb]\nhost = \"localhost\"\ndbname = \"bazdb\"\n"),
        "{toml}"
    );
    let check = check_config(&dir.path().join("churnstile.toml"));
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(
        check.stdout.ends_with("OK (1 databases, 1 users)\n"),
        "{}",
        check.stdout
    );
}

#[test]
fn production_transaction_file_lists_every_setting_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (exit, toml) = import(&fixture("production.ini"), dir.path());
    assert_eq!(exit.code, SOMETHING_DROPPED, "{}", exit.stderr);
    assert_eq!(
        dropped(&exit.stderr),
        [
            "14 [pgbouncer] logfile",
            "15 [pgbouncer] pidfile",
            "22 [pgbouncer] auth_user",
            "23 [pgbouncer] auth_query",
            "31 [pgbouncer] reserve_pool_size",
            "32 [pgbouncer] reserve_pool_timeout",
            "34 [pgbouncer] max_db_connections",
            "45 [pgbouncer] ignore_startup_parameters",
            "46 [pgbouncer] client_tls_sslmode",
            "47 [pgbouncer] client_tls_key_file",
            "48 [pgbouncer] client_tls_cert_file",
            "49 [pgbouncer] tcp_keepalive",
            "50 [pgbouncer] stats_period",
            "8 [databases] reports: reserve_pool",
            "9 [databases] billing: auth_user",
            "9 [databases] billing: max_db_connections",
            "9 [databases] billing: application_name",
            "10 [databases] legacy: connect_query",
            "11 [databases] *",
        ]
    );
    assert!(
        exit.stderr
            .contains("[databases] *: not carried over: churnstile has no fallback database")
    );
    assert!(!exit.stderr.contains("s3cr"), "a password reached stderr");
    for expected in [
        "postgres = [\"0.0.0.0:6432\"]\nunix_socket_dir = \"\"\n",
        "admin_users = [\"pgbouncer_admin\"]\nstats_users = [\"datadog\", \"prometheus\"]\n",
        "[pool]\npool_mode = \"transaction\"\ndefault_pool_size = 25\nmin_pool_size = 5\n",
        "server_lifetime = 1800\nserver_idle_timeout = 300\nserver_connect_timeout = 5\n",
        "[databases.reports]\nhost = \"db-replica.internal\"\nport = 5432\ndbname = \"app\"\npool_mode = \"session\"\ndefault_pool_size = 5\n",
        "user = \"legacy_owner\"\npassword = \"s3cr'et\"\n",
    ] {
        assert!(toml.contains(expected), "{expected:?} not in\n{toml}");
    }
    let check = check_config(&dir.path().join("churnstile.toml"));
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(
        check.stdout.ends_with("OK (5 databases, 6 users)\n"),
        "{}",
        check.stdout
    );
}

#[test]
fn included_files_are_followed_and_nothing_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (exit, toml) = import(&fixture("include.ini"), dir.path());
    assert_eq!(exit.code, NOTHING_DROPPED, "{}", exit.stderr);
    assert_eq!(exit.stderr, "");
    for expected in [
        "postgres = [\"127.0.0.1:6433\", \"[::1]:6433\"]\n",
        "auth_type = \"md5\"\n",
        "[pool]\npool_mode = \"transaction\"\ndefault_pool_size = 10\nserver_lifetime = 600.5\n",
        "[databases.inventory]\nhost = \"10.0.1.6\"\nport = 5433\ndbname = \"inventory\"\ndefault_pool_size = 4\n",
        // The later definition in the included file wins.
        "[databases.orders]\nhost = \"10.0.1.7\"\ndbname = \"orders\"\n",
    ] {
        assert!(toml.contains(expected), "{expected:?} not in\n{toml}");
    }
    let check = check_config(&dir.path().join("churnstile.toml"));
    assert_eq!(check.code, 0, "{}", check.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_production_config_serves_a_client() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("userlist.txt"), dir.path().join("userlist.txt")).unwrap();
    let port = free_port();
    let ini = std::fs::read_to_string(fixture("production.ini"))
        .unwrap()
        .replace("db-primary.internal", pg.host())
        .replace("db-replica.internal", pg.host())
        .replace("port=5432", &format!("port={}", pg.port()))
        .replace("listen_addr = *", "listen_addr = 127.0.0.1")
        .replace("listen_port = 6432", &format!("listen_port = {port}"));
    let ini_path = dir.path().join("pgbouncer.ini");
    std::fs::write(&ini_path, ini).unwrap();
    let (exit, _) = import(&ini_path, dir.path());
    assert_eq!(exit.code, SOMETHING_DROPPED, "{}", exit.stderr);
    let config = dir.path().join("churnstile.toml");
    let proxy = Proxy::start_args(&["--config", config.to_str().unwrap()], port);
    for database in ["app", "app_ro", "reports"] {
        let client = proxy
            .connect(PLAIN_USER.name, PLAIN_USER.password, database)
            .await;
        assert_eq!(
            scalar(&client, "SELECT current_user::text").await,
            PLAIN_USER.name
        );
        assert_eq!(
            scalar(&client, "SELECT current_database()::text").await,
            "app"
        );
    }
}

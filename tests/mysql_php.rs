//! PHP's mysqli and PDO (mysqlnd), the commonest MySQL clients behind
//! connection churn, through churnstile's transaction pooling: a connection
//! per query, server-side prepared statements (PDO with emulated prepares
//! off), LAST_INSERT_ID. Skipped, saying so, where PHP with mysqli and
//! pdo_mysql is not installed (tests/run.sh installs it where it can).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::{APP_DB, MYSQL_APP_USER, MariaDbServer, Proxy, mysql_proxy_config};

const CYCLES: usize = 200;
/// mysqli's and PDO's cycles, the re-executing mysqli client with its two
/// holders, and PDO's final count.
const PHP_CONNECTIONS: usize = 2 * CYCLES + 4;
const POOL_SIZE: u64 = 2;

/// Whether `php` runs and has both extensions the script needs.
fn php_with_mysql() -> bool {
    Command::new("php")
        .args([
            "-r",
            "exit(extension_loaded('mysqli') && extension_loaded('pdo_mysql') ? 0 : 1);",
        ])
        .status()
        .is_ok_and(|status| status.success())
}

#[tokio::test]
async fn php_mysqli_and_pdo_connect_per_query_with_server_side_prepares() {
    if !php_with_mysql() {
        println!(
            "skipped: php with mysqli and pdo_mysql is not installed \
             (apt-get install php-cli php-mysql)"
        );
        return;
    }
    let maria = MariaDbServer::start();
    maria.query(&format!(
        "CREATE TABLE {APP_DB}.php_rows (id INT AUTO_INCREMENT PRIMARY KEY, n INT, \
         label VARCHAR(20))"
    ));
    let proxy = Proxy::start(&mysql_proxy_config(
        &maria,
        "transaction",
        POOL_SIZE as usize,
    ));
    let prepares_before = maria.global_status("Com_stmt_prepare");
    let before = maria.connections_total();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/php/mysql_clients.php");
    let started = Instant::now();
    let output = Command::new("php")
        .arg(&script)
        .args(["127.0.0.1", &proxy.mysql_port().to_string()])
        .args([MYSQL_APP_USER.name, MYSQL_APP_USER.password, APP_DB])
        .arg(CYCLES.to_string())
        .output()
        .expect("running php");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}\nchurnstile stderr:\n{}",
        String::from_utf8_lossy(&output.stderr),
        proxy.stderr()
    );
    assert_eq!(stdout.trim(), format!("ok mysqli={CYCLES} pdo={CYCLES}"));
    println!(
        "{PHP_CONNECTIONS} PHP connections took {:?}",
        started.elapsed()
    );

    let opened = maria.connections_total() - before - 1;
    assert!(
        (1..=POOL_SIZE).contains(&opened),
        "{PHP_CONNECTIONS} PHP connections opened {opened} upstream connections"
    );
    // Server-side prepares reached MariaDB (PDO did not emulate them): one
    // per mysqli cycle, two per PDO cycle.
    let prepares = maria.global_status("Com_stmt_prepare") - prepares_before;
    assert!(prepares >= 3 * CYCLES as u64, "{prepares} prepares");
}

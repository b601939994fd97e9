//! `MariaDbServer`: a throwaway MariaDB server for one test, with its own
//! data directory, port and socket, gone when the value is dropped. Tests
//! talk to it through the `mariadb` command-line client.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use rustix::process::Signal;
use tempfile::TempDir;

use super::child::{self, Startup};
use super::credentials::{APP_DB, NATIVE_USER};
use super::os_account;
use super::ports::free_port;
use super::temp_dirs::temp_dir;

const HOST: &str = "127.0.0.1";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(20);
/// Another process may take a port between `free_port` and the bind.
const START_ATTEMPTS: u32 = 3;

/// Options for [`MariaDbServer`]; `MariaDbServer::start()` uses the defaults.
pub struct MariaDbServerBuilder {
    max_connections: u32,
    options: Vec<String>,
}

impl MariaDbServerBuilder {
    /// `max_connections` (default 151, MariaDB's own default).
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// A mariadbd option such as `"--wait-timeout=2"`, after the harness's
    /// own, so it wins.
    pub fn option(mut self, option: &str) -> Self {
        self.options.push(option.to_owned());
        self
    }

    /// Creates the data directory, starts the server and creates `app` and
    /// `native_user`. Panics, with the server log, if any step fails.
    pub fn start(self) -> MariaDbServer {
        let dir = temp_dir("mariadb");
        let mut server = MariaDbServer {
            dir,
            port: free_port(),
            options: self.options,
            max_connections: self.max_connections,
            mariadbd: None,
        };
        server.install();
        server.launch_until_ready(true);
        server.query(&format!(
            "CREATE DATABASE {APP_DB}; \
             CREATE USER '{user}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{password}'); \
             GRANT ALL ON {APP_DB}.* TO '{user}'@'%';",
            user = NATIVE_USER.name,
            password = NATIVE_USER.password,
        ));
        server
    }
}

/// A running MariaDB server listening on 127.0.0.1 and a Unix socket, with
/// the database `app` and the account `NATIVE_USER`; `root` has no password.
pub struct MariaDbServer {
    dir: TempDir,
    port: u16,
    options: Vec<String>,
    max_connections: u32,
    mariadbd: Option<Child>,
}

impl MariaDbServer {
    pub fn start() -> MariaDbServer {
        MariaDbServer::builder().start()
    }

    pub fn builder() -> MariaDbServerBuilder {
        MariaDbServerBuilder {
            max_connections: 151,
            options: Vec::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        HOST
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// PID of mariadbd. Panics while the server is stopped.
    pub fn pid(&self) -> u32 {
        self.mariadbd
            .as_ref()
            .map(Child::id)
            .expect("MariaDB server is stopped")
    }

    /// Everything the server has logged since it was first started.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// Runs `sql` as root over TCP and returns the rows, tab-separated,
    /// without column names or the final newline. Panics on error.
    pub fn query(&self, sql: &str) -> String {
        self.query_as("root", "", None, sql)
            .unwrap_or_else(|e| panic!("MariaDB root query failed: {sql}\n{e}"))
    }

    /// Runs `sql` as `user` over TCP (in `db`, if given); the error is the
    /// client's stderr, e.g. `ERROR 1045 (28000): Access denied ...`.
    pub fn query_as(
        &self,
        user: &str,
        password: &str,
        db: Option<&str>,
        sql: &str,
    ) -> Result<String, String> {
        let mut client = Command::new(program("mariadb"));
        client
            .arg("--no-defaults")
            .args([
                "--protocol=tcp",
                "--batch",
                "--skip-column-names",
                "--connect-timeout=10",
            ])
            .arg(format!("--host={HOST}"))
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={user}"))
            .arg(format!("--execute={sql}"));
        if !password.is_empty() {
            client.arg(format!("--password={password}"));
        }
        client.args(db);
        let output = client
            .output()
            .unwrap_or_else(|e| panic!("running the mariadb client: {e}"));
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout)
                .trim_end_matches('\n')
                .to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// `SHOW GLOBAL STATUS LIKE 'Connections'`: connection attempts since the
    /// server started, counting the one that asks.
    pub fn connections_total(&self) -> u64 {
        self.global_status("Connections")
    }

    /// A numeric global status variable, such as `Com_stmt_prepare`; asking
    /// opens a connection, which `Connections` counts.
    pub fn global_status(&self, name: &str) -> u64 {
        let row = self.query(&format!("SHOW GLOBAL STATUS LIKE '{name}'"));
        row.split_whitespace()
            .nth(1)
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("unexpected SHOW GLOBAL STATUS row: {row:?}"))
    }

    /// Normal shutdown (SIGTERM); SIGKILL if it takes longer than 20 s.
    /// Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut mariadbd) = self.mariadbd.take() {
            child::stop(&mut mariadbd, Signal::TERM, STOP_GRACE);
        }
    }

    /// Stops (if running) and starts again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch_until_ready(false);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Options both `mariadb-install-db` and `mariadbd` need.
    fn common_options(&self, command: &mut Command) {
        // Only root must name itself; anyone else runs the server as itself.
        if os_account::running_as_root() {
            command.arg("--user=root");
        }
        command
            .arg(format!("--datadir={}", self.data_dir().display()))
            // Not the shared /tmp: servers installing at once (here and in
            // other test runs) removed each other's temporary tables there.
            .arg(format!("--tmpdir={}", self.dir.path().display()))
            // Small and unsafe on crash, which a throwaway server can afford.
            .args(["--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M"]);
    }

    fn install(&self) {
        let install_log = self.dir.path().join("install.log");
        let mut install = Command::new(program("mariadb-install-db"));
        install.arg("--no-defaults");
        self.common_options(&mut install);
        install.args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        child::output_to(&mut install, &install_log);
        let status = install
            .status()
            .unwrap_or_else(|e| panic!("running mariadb-install-db: {e}"));
        if !status.success() {
            panic!(
                "mariadb-install-db failed ({status}):\n{}",
                fs::read_to_string(&install_log).unwrap_or_default()
            );
        }
    }

    fn launch_until_ready(&mut self, may_change_port: bool) {
        let mut attempt = 1;
        loop {
            let log_before = self.log().len();
            let mut command = Command::new(program("mariadbd"));
            command.arg("--no-defaults");
            self.common_options(&mut command);
            command
                .arg(format!("--port={}", self.port))
                .arg(format!("--bind-address={HOST}"))
                .arg(format!("--socket={}", self.socket_path().display()))
                .arg(format!(
                    "--pid-file={}",
                    self.dir.path().join("mariadbd.pid").display()
                ))
                .arg(format!("--max-connections={}", self.max_connections))
                .arg("--innodb-flush-log-at-trx-commit=0")
                .args(&self.options);
            child::output_to(&mut command, &self.log_path());
            let mut mariadbd = child::spawn_supervised(command)
                .unwrap_or_else(|e| panic!("starting mariadbd: {e}"));
            match child::wait_ready(&mut mariadbd, READY_TIMEOUT, || {
                self.query_as("root", "", None, "SELECT 1").is_ok()
            }) {
                Startup::Ready => {
                    self.mariadbd = Some(mariadbd);
                    return;
                }
                Startup::Exited(status) => {
                    let port_taken = self
                        .log()
                        .get(log_before..)
                        .is_some_and(|new| new.contains("Address already in use"));
                    if port_taken && may_change_port && attempt < START_ATTEMPTS {
                        self.port = free_port();
                        attempt += 1;
                        continue;
                    }
                    panic!(
                        "mariadbd on port {} exited during startup ({status}); server log:\n{}",
                        self.port,
                        self.log()
                    );
                }
                Startup::TimedOut => {
                    child::stop(&mut mariadbd, Signal::KILL, STOP_GRACE);
                    panic!(
                        "mariadbd did not accept connections on {HOST}:{} within {READY_TIMEOUT:?}; server log:\n{}",
                        self.port,
                        self.log()
                    );
                }
            }
        }
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        // Fields drop after this, so the data directory goes once the
        // server no longer writes to it.
        self.stop();
    }
}

/// A MariaDB program from $PATH, or from /usr/sbin where Debian puts
/// mariadbd and which a non-root $PATH often lacks.
fn program(name: &str) -> PathBuf {
    let search_path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&search_path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` not found in $PATH or /usr/sbin; tests/run.sh installs MariaDB")
        })
}

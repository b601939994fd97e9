//! `PgServer`: a throwaway PostgreSQL server for one test, with its own data
//! directory, port and Unix socket directory, gone when the value is dropped.
//!
//! Preparing the cluster lives in `postgres/install.rs`; what tests ask a
//! running server lives in `postgres/queries.rs`.

mod install;
mod queries;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use rustix::process::Signal;
use tempfile::TempDir;

use super::child::{self, Startup};
use super::credentials::PG_SUPERUSER;
use super::os_account::Account;
use super::ports::free_port;
use super::temp_dirs::temp_dir;

const HOST: &str = "127.0.0.1";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Fast shutdown rolls back open transactions; this is plenty for that.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Another process may take a port between `free_port` and the bind.
const START_ATTEMPTS: u32 = 3;

/// Options for [`PgServer`]; `PgServer::start()` uses the defaults.
pub struct PgServerBuilder {
    max_connections: u32,
    config_lines: Vec<String>,
    tls: Option<ServerTls>,
}

/// `ssl = on` with this certificate and key; with `hostssl_only`, pg_hba
/// has only `hostssl` lines for TCP, so plaintext TCP logins are refused.
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub hostssl_only: bool,
}

impl PgServerBuilder {
    /// `max_connections` (default 100). PostgreSQL keeps
    /// `superuser_reserved_connections` (3) of them for superusers, which
    /// the harness's own queries use.
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// A postgresql.conf line such as `"idle_session_timeout = '1s'"`,
    /// written after the harness's own settings, so it wins.
    pub fn config(mut self, line: &str) -> Self {
        self.config_lines.push(line.to_owned());
        self
    }

    /// Serves TLS (`ssl = on`) with `tls`'s certificate and key.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Creates the cluster, starts the server and creates the test roles and
    /// the `app` database. Panics, with the server log, if any step fails.
    pub fn start(self) -> PgServer {
        let dir = temp_dir("pg");
        let mut server = PgServer {
            dir,
            port: free_port(),
            run_as: install::server_account(),
            postmaster: None,
        };
        install::init_cluster(&server, &self);
        server.launch_until_ready(true);
        install::create_accounts(&server);
        server
    }
}

/// A running PostgreSQL server listening on 127.0.0.1 and a Unix socket.
///
/// Has the roles in `credentials` (`PG_USERS`, each with its own pg_hba
/// method) and the database `app`. Logs every connection
/// (`log_connections`), so [`PgServer::connections_authorized`] is exact.
pub struct PgServer {
    dir: TempDir,
    port: u16,
    /// The service account the server runs as when tests run as root.
    run_as: Option<Account>,
    postmaster: Option<Child>,
}

impl PgServer {
    pub fn start() -> PgServer {
        PgServer::builder().start()
    }

    pub fn builder() -> PgServerBuilder {
        PgServerBuilder {
            max_connections: 100,
            config_lines: Vec::new(),
            tls: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        HOST
    }

    /// Where the server's `.s.PGSQL.<port>` socket lives.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// PID of the postmaster. Panics while the server is stopped.
    pub fn pid(&self) -> u32 {
        self.postmaster
            .as_ref()
            .map(Child::id)
            .expect("PostgreSQL server is stopped")
    }

    /// Everything the server has logged since it was first started.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// Fast shutdown (SIGINT: clients are disconnected, transactions rolled
    /// back); SIGKILL if that takes longer than 15 s. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut postmaster) = self.postmaster.take() {
            child::stop(&mut postmaster, Signal::INT, STOP_GRACE);
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

    /// A command for a server-side binary, run as the service account.
    fn server_command(&self, program: &str) -> Command {
        let mut command = Command::new(install::bindir().join(program));
        command.current_dir(self.dir.path());
        if let Some(account) = self.run_as {
            use std::os::unix::process::CommandExt;
            command.uid(account.uid).gid(account.gid);
        }
        command
    }

    fn launch_until_ready(&mut self, may_change_port: bool) {
        let mut attempt = 1;
        loop {
            let log_before = self.log().len();
            let mut command = self.server_command("postgres");
            command
                .arg("-D")
                .arg(self.data_dir())
                .arg("-p")
                .arg(self.port.to_string());
            child::output_to(&mut command, &self.log_path());
            let mut postmaster = child::spawn_supervised(command)
                .unwrap_or_else(|e| panic!("starting {}: {e}", install::bindir().display()));
            match child::wait_ready(&mut postmaster, READY_TIMEOUT, || {
                self.accepts_connections()
            }) {
                Startup::Ready => {
                    self.postmaster = Some(postmaster);
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
                        "PostgreSQL on port {} exited during startup ({status}); server log:\n{}",
                        self.port,
                        self.log()
                    );
                }
                Startup::TimedOut => {
                    child::stop(&mut postmaster, Signal::QUIT, STOP_GRACE);
                    panic!(
                        "PostgreSQL did not accept connections on {HOST}:{} within {READY_TIMEOUT:?}; server log:\n{}",
                        self.port,
                        self.log()
                    );
                }
            }
        }
    }

    /// `pg_isready`: accepting connections, not merely listening.
    fn accepts_connections(&self) -> bool {
        Command::new(install::bindir().join("pg_isready"))
            .args([
                "-q",
                "-t",
                "2",
                "-h",
                HOST,
                "-U",
                PG_SUPERUSER,
                "-d",
                "postgres",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Fields drop after this, so the data directory goes once the
        // server no longer writes to it.
        self.stop();
    }
}

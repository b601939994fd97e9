//! `Proxy`: the churnstile binary under test, run as a child process with
//! its own config, listen port, socket directory and captured output.

use std::env;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use rustix::process::{Resource, Rlimit, Signal, setrlimit};
use tempfile::TempDir;
use tokio_postgres::Client;

use super::child::{self, Startup};
use super::credentials::{APP_DB, PgUser};
use super::pg_client::{self, backend_pid};
use super::ports::free_port;
use super::temp_dirs::temp_dir;

const BINARY: &str = env!("CARGO_BIN_EXE_churnstile");
const HOST: &str = "127.0.0.1";
const CONFIG_FILE: &str = "churnstile.toml";
/// The MySQL Unix socket's name in `{socket_dir}`, by convention.
pub const MYSQL_SOCKET: &str = "mysql.sock";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Another process may take a port between `free_port` and the bind.
const START_ATTEMPTS: u32 = 3;

/// How a churnstile run that was expected to end ended.
#[derive(Debug)]
pub struct ProcessExit {
    /// The exit code, or 128 + signal number if a signal killed it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A running churnstile. Dropping it sends SIGINT (transactions finish,
/// clients are told, without waiting for them to leave), then SIGKILL after
/// 10 s.
pub struct Proxy {
    dir: TempDir,
    port: u16,
    /// The MySQL TCP listener's port, when the config has one.
    mysql_port: Option<u16>,
    child: Child,
}

impl Proxy {
    /// Runs `churnstile --config FILE` with `config_toml` after replacing
    /// `{port}` with a free port (the PostgreSQL listener), `{mysql_port}`
    /// with another (the MySQL listener) and `{socket_dir}` with a fresh
    /// directory. Returns once the ports the config names, and
    /// `{socket_dir}/mysql.sock` if it names that, accept connections; panics with churnstile's
    /// stderr if it exits or does not listen in 20 s.
    pub fn start(config_toml: &str) -> Proxy {
        Proxy::launch(config_toml, None, &[])
    }

    /// Like [`Proxy::start`], with churnstile's RLIMIT_NOFILE set to `soft`
    /// and `hard` before it runs (it raises the soft limit to the hard one
    /// itself; a low hard limit is what starves it of descriptors).
    pub fn start_with_fd_limit(config_toml: &str, soft: u64, hard: u64) -> Proxy {
        Proxy::launch(config_toml, Some((soft, hard)), &[])
    }

    /// Like [`Proxy::start`], with `env` (name, value) pairs set for
    /// churnstile.
    pub fn start_with_env(config_toml: &str, env: &[(&str, &str)]) -> Proxy {
        Proxy::launch(config_toml, None, env)
    }

    fn launch(config_toml: &str, fd_limit: Option<(u64, u64)>, env: &[(&str, &str)]) -> Proxy {
        let dir = proxy_dir();
        let socket_dir = dir.path().join("sockets");
        let config_path = dir.path().join(CONFIG_FILE);
        let config_arg = config_path.display().to_string();
        let mut attempt = 1;
        loop {
            let port = free_port();
            let mysql_port = config_toml.contains("{mysql_port}").then(free_port);
            let config = config_toml
                .replace("{port}", &port.to_string())
                .replace("{mysql_port}", &mysql_port.unwrap_or(0).to_string())
                .replace("{socket_dir}", &socket_dir.display().to_string());
            fs::write(&config_path, config)
                .unwrap_or_else(|e| panic!("writing {}: {e}", config_path.display()));
            let mut child = spawn(dir.path(), &["--config", &config_arg], fd_limit, env);
            let postgres_port = config_toml.contains("{port}").then_some(port);
            let ports: Vec<u16> = [postgres_port, mysql_port].into_iter().flatten().collect();
            // The MySQL socket is bound after the TCP listeners.
            let mysql_socket = config_toml
                .contains(&format!("{{socket_dir}}/{MYSQL_SOCKET}"))
                .then(|| socket_dir.join(MYSQL_SOCKET));
            match wait_listening(&mut child, &ports, mysql_socket.as_deref()) {
                Startup::Ready => {
                    return Proxy {
                        dir,
                        port,
                        mysql_port,
                        child,
                    };
                }
                Startup::Exited(_) if attempt < START_ATTEMPTS && port_was_taken(dir.path()) => {
                    attempt += 1;
                }
                Startup::Exited(status) => fail_startup(&mut child, dir.path(), Some(status)),
                Startup::TimedOut => fail_startup(&mut child, dir.path(), None),
            }
        }
    }

    /// Runs `churnstile ARGS` (zero-config mode, e.g. `--listen
    /// 127.0.0.1:PORT --upstream postgres://...`) and returns once `port`,
    /// which the caller got from `free_port()`, accepts connections.
    pub fn start_args(args: &[&str], port: u16) -> Proxy {
        Proxy::start_args_with_env(args, port, &[])
    }

    /// Like [`Proxy::start_args`], with `env` (name, value) pairs set for
    /// churnstile.
    pub fn start_args_with_env(args: &[&str], port: u16, env: &[(&str, &str)]) -> Proxy {
        let dir = proxy_dir();
        let mut child = spawn(dir.path(), args, None, env);
        match wait_listening(&mut child, &[port], None) {
            Startup::Ready => Proxy {
                dir,
                port,
                mysql_port: None,
                child,
            },
            Startup::Exited(status) => fail_startup(&mut child, dir.path(), Some(status)),
            Startup::TimedOut => fail_startup(&mut child, dir.path(), None),
        }
    }

    /// Runs churnstile in zero-config mode on a free port: `--listen
    /// 127.0.0.1:PORT --upstream URL` followed by `extra_args` (such as
    /// `--pool-size 2`); returns once it accepts connections.
    pub fn start_zero_config(upstream_url: &str, extra_args: &[&str]) -> Proxy {
        let port = free_port();
        let listen = format!("{HOST}:{port}");
        let mut args = vec!["--listen", &listen, "--upstream", upstream_url];
        args.extend_from_slice(extra_args);
        Proxy::start_args(&args, port)
    }

    /// [`Proxy::start_zero_config`] with a `mysql://` upstream URL: the
    /// listener speaks MySQL, and `mysql_port()` is its port.
    pub fn start_zero_config_mysql(upstream_url: &str, extra_args: &[&str]) -> Proxy {
        let mut proxy = Proxy::start_zero_config(upstream_url, extra_args);
        proxy.mysql_port = Some(proxy.port);
        proxy
    }

    /// Runs `churnstile ARGS` expecting it to exit by itself within 20 s,
    /// as `check-config` and startup failures do; panics if it does not.
    pub fn spawn_expect_exit(args: &[&str]) -> ProcessExit {
        let dir = proxy_dir();
        let mut child = spawn(dir.path(), args, None, &[]);
        let Some(status) = child::wait_exit(&mut child, EXIT_TIMEOUT) else {
            child::stop(&mut child, Signal::KILL, STOP_GRACE);
            panic!(
                "churnstile {args:?} still running after {EXIT_TIMEOUT:?}; stderr:\n{}",
                read_lossy(&dir.path().join("stderr.log"))
            );
        };
        ProcessExit {
            code: child::exit_code(status),
            stdout: read_lossy(&dir.path().join("stdout.log")),
            stderr: read_lossy(&dir.path().join("stderr.log")),
        }
    }

    /// The PostgreSQL TCP listener's port (also the Unix socket's number).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The MySQL TCP listener's port: what `{mysql_port}` stood for in the
    /// config. Panics if the config had none.
    pub fn mysql_port(&self) -> u16 {
        self.mysql_port
            .expect("churnstile was started without a {mysql_port} listener")
    }

    /// `{socket_dir}/mysql.sock`, where MySQL test configs put churnstile's
    /// MySQL Unix socket.
    pub fn mysql_socket(&self) -> PathBuf {
        self.socket_dir().join(MYSQL_SOCKET)
    }

    /// What `{socket_dir}` stood for in the config.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sockets")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open file descriptors, counted in /proc/PID/fd.
    pub fn fd_count(&self) -> usize {
        let fd_dir = format!("/proc/{}/fd", self.pid());
        fs::read_dir(&fd_dir)
            .unwrap_or_else(|e| panic!("listing {fd_dir}: {e}"))
            .count()
    }

    /// Peak resident memory (VmHWM in /proc/PID/status), in KiB.
    pub fn rss_peak_kb(&self) -> u64 {
        let status_path = format!("/proc/{}/status", self.pid());
        let status = fs::read_to_string(&status_path)
            .unwrap_or_else(|e| panic!("reading {status_path}: {e}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {status_path}"))
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.dir.path().join("stdout.log"))
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.path().join("stderr.log"))
    }

    /// Sends a signal such as `Signal::TERM` or `Signal::INT`.
    pub fn send_signal(&mut self, signal: Signal) {
        child::send_signal(&mut self.child, signal);
    }

    /// Waits up to `timeout` for churnstile to exit; `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        child::wait_exit(&mut self.child, timeout)
    }

    /// A tokio-postgres connection string for the proxy's TCP listener.
    pub fn connection_string(&self, user: &str, password: &str, db: &str) -> String {
        pg_client::connection_string(HOST, self.port, user, password, db)
    }

    /// A tokio-postgres connection string for the proxy's Unix socket.
    pub fn unix_connection_string(&self, user: &str, password: &str, db: &str) -> String {
        let socket_dir = self.socket_dir();
        pg_client::connection_string(
            &socket_dir.display().to_string(),
            self.port,
            user,
            password,
            db,
        )
    }

    /// Connects through the proxy over TCP. Panics if the login takes
    /// longer than 20 s, with churnstile's stderr.
    pub async fn try_connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let connection_string = self.connection_string(user, password, db);
        tokio::time::timeout(CONNECT_TIMEOUT, pg_client::connect(&connection_string))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "logging in through churnstile as {user} to {db} took over {CONNECT_TIMEOUT:?}; stderr:\n{}",
                    self.stderr()
                )
            })
    }

    /// Connects through the proxy over TCP; panics, with churnstile's
    /// stderr, if that fails.
    pub async fn connect(&self, user: &str, password: &str, db: &str) -> Client {
        self.try_connect(user, password, db)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connecting through churnstile as {user} to {db}: {e}; stderr:\n{}",
                    self.stderr()
                )
            })
    }

    /// Connects through the proxy over TCP as `user`, with its own
    /// password, to `app`; panics, with churnstile's stderr, if that fails.
    pub async fn connect_as(&self, user: PgUser) -> Client {
        self.connect(user.name, user.password, APP_DB).await
    }

    /// With a pool of two, a client of `user` holding an open transaction on
    /// the server connection with backend `pid`, so whoever asks next lands
    /// on the other one.
    pub async fn hold_server_with_pid(&self, user: PgUser, pid: i32) -> Client {
        let first = self.connect_as(user).await;
        first.batch_execute("BEGIN").await.unwrap();
        if backend_pid(&first).await == pid {
            return first;
        }
        let second = self.connect_as(user).await;
        second.batch_execute("BEGIN").await.unwrap();
        assert_eq!(
            backend_pid(&second).await,
            pid,
            "a pool of two has no server connection with pid {pid}"
        );
        first.batch_execute("COMMIT").await.unwrap();
        second
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        child::stop(&mut self.child, Signal::INT, STOP_GRACE);
    }
}

fn proxy_dir() -> TempDir {
    let dir = temp_dir("proxy");
    let socket_dir = dir.path().join("sockets");
    fs::create_dir(&socket_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", socket_dir.display()));
    dir
}

/// Starts churnstile from the test's working directory (the package root,
/// for relative paths in `args`), its output in `dir/stdout.log` and
/// `dir/stderr.log` (truncated, so they hold this run only), with
/// RLIMIT_NOFILE set to `fd_limit` (soft, hard) when given, and `env` set.
fn spawn(dir: &Path, args: &[&str], fd_limit: Option<(u64, u64)>, env: &[(&str, &str)]) -> Child {
    let create = |name: &str| {
        let path = dir.join(name);
        File::create(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()))
    };
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .envs(env.iter().copied())
        .stdout(create("stdout.log"))
        .stderr(create("stderr.log"));
    if env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "churnstile=debug");
    }
    if let Some((soft, hard)) = fd_limit {
        let limit = Rlimit {
            current: Some(soft),
            maximum: Some(hard),
        };
        // SAFETY: setrlimit is a plain system call, async-signal-safe
        // between fork and exec.
        unsafe {
            command.pre_exec(move || Ok(setrlimit(Resource::Nofile, limit)?));
        }
    }
    child::spawn_supervised(command).unwrap_or_else(|e| panic!("starting {BINARY}: {e}"))
}

/// Waits until every one of `ports`, and `unix_socket` if given, accepts
/// connections.
fn wait_listening(child: &mut Child, ports: &[u16], unix_socket: Option<&Path>) -> Startup {
    child::wait_ready(child, READY_TIMEOUT, || {
        ports.iter().all(|&port| {
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
        }) && unix_socket.is_none_or(|path| UnixStream::connect(path).is_ok())
    })
}

fn port_was_taken(dir: &Path) -> bool {
    read_lossy(&dir.join("stderr.log")).contains("in use")
}

/// Panics with churnstile's stderr; `exited` is `None` when it is still
/// running but not listening, and then it is killed first.
fn fail_startup(child: &mut Child, dir: &Path, exited: Option<ExitStatus>) -> ! {
    let what = match exited {
        Some(status) => format!("exited during startup ({status})"),
        None => {
            child::stop(child, Signal::KILL, STOP_GRACE);
            format!("did not listen within {READY_TIMEOUT:?}")
        }
    };
    let config = dir.join(CONFIG_FILE);
    let config = if config.exists() {
        format!("\nconfig {}:\n{}", config.display(), read_lossy(&config))
    } else {
        String::new()
    };
    panic!(
        "churnstile {what}; stderr:\n{}{config}",
        read_lossy(&dir.join("stderr.log"))
    );
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

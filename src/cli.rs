//! Command-line interface: run from a config file, run zero-config as a
//! sidecar (`--listen` + `--upstream`, `--upstream-file` or
//! `CHURNSTILE_UPSTREAM`), check a config file, diagnose the
//! host (`doctor`), watch a running instance (`top`), or convert a
//! PgBouncer configuration (`import-pgbouncer`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use churnstile::config::{self, PoolMode, Sidecar};
use churnstile::doctor::{DEFAULT_TOP, DoctorOptions};
use churnstile::host::TIME_WAIT;

#[derive(Debug, Parser)]
#[command(
    name = "churnstile",
    version,
    about = "Connection-pooling proxy that keeps upstream connections and TIME_WAIT bounded however fast clients churn"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Run with this configuration file.
    #[arg(short, long, value_name = "FILE", conflicts_with_all = ["listen", "upstream", "upstream_file"])]
    pub config: Option<PathBuf>,

    /// Zero-config mode: address to accept clients on (PostgreSQL ones, or
    /// MySQL ones when every upstream is mysql://).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Zero-config mode: an upstream as postgres://USER[:PASS]@HOST:PORT/DB
    /// or mysql://...; repeat for several databases (one each, named by
    /// DB). Without PASS, PGPASSWORD or MYSQL_PWD is used, so no password
    /// shows in `ps`. Defaults to $CHURNSTILE_UPSTREAM.
    /// Add ?sslmode=verify-full&sslrootcert=CA.pem for TLS upstream
    /// (default sslmode=prefer).
    #[arg(long, value_name = "URL", requires = "listen")]
    upstream: Vec<String>,

    /// Zero-config mode: upstream URLs from FILE, one per line (`#` starts
    /// a comment).
    #[arg(long, value_name = "FILE", requires = "listen")]
    upstream_file: Option<PathBuf>,

    /// Zero-config mode: address for MySQL clients when the upstreams mix
    /// postgres:// and mysql://.
    #[arg(long, value_name = "ADDR", requires = "listen")]
    mysql_listen: Option<SocketAddr>,

    /// Zero-config mode: directory for the Unix sockets (.s.PGSQL.<port>,
    /// churnstile-mysql-<port>.sock).
    #[arg(long, value_name = "DIR", requires = "listen")]
    unix_socket_dir: Option<PathBuf>,

    /// Zero-config mode: pool mode.
    #[arg(long, value_enum, requires = "listen")]
    pool_mode: Option<PoolModeArg>,

    /// Zero-config mode: most server connections per database and user
    /// (default_pool_size).
    #[arg(long, value_name = "N", requires = "listen")]
    pool_size: Option<usize>,

    /// Zero-config mode: client connections at once (default 100).
    #[arg(long, value_name = "N", requires = "listen")]
    max_client_conn: Option<usize>,

    /// Zero-config mode: this upstream URL user may open the admin console
    /// (database `churnstile`).
    #[arg(long, value_name = "NAME", requires = "listen")]
    admin_user: Option<String>,

    /// Address for the Prometheus metrics endpoint (overrides [general]
    /// metrics_listen).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

/// The environment variable that may hold the upstream URL.
const UPSTREAM_ENV: &str = "CHURNSTILE_UPSTREAM";

impl Cli {
    /// The zero-config flags, when `--listen` is given; an error message
    /// when no upstream is given or the upstream file cannot be read.
    pub fn sidecar(&self) -> Result<Option<Sidecar>, String> {
        let Some(listen) = self.listen else {
            return Ok(None);
        };
        let mut upstreams = self.upstream.clone();
        if let Some(path) = &self.upstream_file {
            upstreams.extend(read_upstream_file(path)?);
        }
        if upstreams.is_empty() {
            let from_env = std::env::var(UPSTREAM_ENV)
                .ok()
                .filter(|url| !url.is_empty());
            upstreams.extend(from_env);
        }
        if upstreams.is_empty() {
            return Err(format!(
                "--listen needs an upstream: give --upstream URL, --upstream-file FILE \
                 or the {UPSTREAM_ENV} environment variable"
            ));
        }
        Ok(Some(Sidecar {
            listen,
            upstreams,
            mysql_listen: self.mysql_listen,
            unix_socket_dir: self.unix_socket_dir.clone(),
            pool_mode: self.pool_mode.map(Into::into),
            pool_size: self.pool_size,
            max_client_conn: self.max_client_conn,
            admin_user: self.admin_user.clone(),
        }))
    }
}

/// The URLs in `path`, one a line; blank lines and `#` comments skipped.
fn read_upstream_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("--upstream-file {}: cannot read: {error}", path.display()))?;
    let urls: Vec<String> = (text.lines().map(str::trim))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        return Err(format!(
            "--upstream-file {}: no upstream URL in it",
            path.display()
        ));
    }
    Ok(urls)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file; prints every error as file:line:column.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Convert a PgBouncer configuration (pgbouncer.ini, following %include)
    /// to churnstile TOML. Every setting not carried over is listed on
    /// stderr with the reason. Exit status 0 when everything was carried
    /// over, 3 when something was dropped, 2 when no valid configuration
    /// came out.
    ImportPgbouncer {
        /// The pgbouncer.ini to read.
        file: PathBuf,
        /// Where to write the TOML; standard output when absent.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Diagnose this host from /proc: listen ports, ephemeral-port pressure,
    /// descriptor leaks, upstream logins. Exit status 0 healthy, 1 warnings,
    /// 2 problems.
    Doctor(DoctorArgs),
    /// Watch a running churnstile live: client against upstream connects per
    /// second, reuse ratio, waiters, pins, TIME_WAIT. q or Ctrl-C quits.
    Top {
        /// The running churnstile's metrics endpoint ([general] metrics_listen).
        #[arg(long, value_name = "URL", default_value = churnstile::top::DEFAULT_URL)]
        metrics: String,
    },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check what this configuration would run: its listeners and a login
    /// to every database as every user.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// A TCP address churnstile listens on (repeatable); replaces the
    /// configuration's. Without --config or --listen: 127.0.0.1:6432 and
    /// /tmp/.s.PGSQL.6432.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,

    /// Log in to this upstream, as `churnstile --upstream URL` would.
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    upstream: Option<String>,

    /// Check only this process's descriptors instead of every process's.
    #[arg(long, value_name = "PID")]
    pid: Option<i32>,

    /// Rows per table.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TOP)]
    top: usize,

    /// Sample sockets twice, SECONDS apart (at most 60), to measure new
    /// connections per second toward each destination.
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    interval: Option<Duration>,

    /// Print the report as JSON (layout in the README).
    #[arg(long)]
    pub json: bool,
}

impl DoctorArgs {
    /// What to check; an error message when the configuration or the URL
    /// is invalid.
    pub fn options(&self) -> Result<DoctorOptions, String> {
        let mut options = match (&self.config, &self.upstream) {
            (Some(path), _) => {
                DoctorOptions::for_config(&config::load_file(path).map_err(|e| e.to_string())?)
            }
            (None, Some(url)) => {
                let listen = self.listen.first().copied();
                let listen = listen.unwrap_or_else(|| DoctorOptions::default().listen[0]);
                let flags = Sidecar::new(listen, url);
                let sidecar = config::sidecar_config(&flags, &|name| std::env::var(name).ok())
                    .map_err(|error| error.to_string())?;
                DoctorOptions::for_config(&sidecar)
            }
            (None, None) if !self.listen.is_empty() => DoctorOptions {
                unix_socket: None,
                ..DoctorOptions::default()
            },
            (None, None) => DoctorOptions::default(),
        };
        if !self.listen.is_empty() {
            options.listen.clone_from(&self.listen);
        }
        options.pid = self.pid;
        options.top = self.top;
        options.interval = self.interval;
        Ok(options)
    }
}

/// Seconds, more than 0 and at most TIME_WAIT's 60: a connection opened and
/// closed between the samples must still show in the second one.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if seconds > 0.0 && seconds <= TIME_WAIT.as_secs_f64() {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(format!(
            "must be more than 0 and at most {} seconds",
            TIME_WAIT.as_secs()
        ))
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PoolModeArg {
    Session,
    Transaction,
    Statement,
}

impl From<PoolModeArg> for PoolMode {
    fn from(mode: PoolModeArg) -> Self {
        match mode {
            PoolModeArg::Session => PoolMode::Session,
            PoolModeArg::Transaction => PoolMode::Transaction,
            PoolModeArg::Statement => PoolMode::Statement,
        }
    }
}

//! Command-line interface: run from a config file, run zero-config as a
//! sidecar (`--listen` + `--upstream`), check a config file, diagnose the
//! host (`doctor`), watch a running instance (`top`), or convert a
//! PgBouncer configuration (`import-pgbouncer`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use churnstile::config::{self, PoolMode};
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
    #[arg(short, long, value_name = "FILE", conflicts_with_all = ["listen", "upstream"])]
    pub config: Option<PathBuf>,

    /// Zero-config mode: address to accept PostgreSQL clients on.
    #[arg(long, value_name = "ADDR", requires = "upstream")]
    pub listen: Option<SocketAddr>,

    /// Zero-config mode: upstream as postgres://USER:PASS@HOST:PORT/DB; clients
    /// must present the same user and password.
    #[arg(long, value_name = "URL", requires = "listen")]
    pub upstream: Option<String>,

    /// Zero-config mode: pool mode.
    #[arg(long, value_enum, requires = "upstream")]
    pub pool_mode: Option<PoolModeArg>,

    /// Zero-config mode: most server connections (default_pool_size).
    #[arg(long, value_name = "N", requires = "upstream")]
    pub pool_size: Option<usize>,

    /// Address for the Prometheus metrics endpoint (overrides [general]
    /// metrics_listen).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
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
    pub config: Option<PathBuf>,

    /// A TCP address churnstile listens on (repeatable); replaces the
    /// configuration's. Without --config or --listen: 127.0.0.1:6432 and
    /// /tmp/.s.PGSQL.6432.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,

    /// Log in to this upstream, as `churnstile --upstream URL` would.
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    pub upstream: Option<String>,

    /// Check only this process's descriptors instead of every process's.
    #[arg(long, value_name = "PID")]
    pub pid: Option<i32>,

    /// Rows per table.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TOP)]
    pub top: usize,

    /// Sample sockets twice, SECONDS apart (at most 60), to measure new
    /// connections per second toward each destination.
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    pub interval: Option<Duration>,

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
                let sidecar = config::sidecar_config(listen, url, None, None)
                    .map_err(|error| format!("--upstream: {error}"))?;
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

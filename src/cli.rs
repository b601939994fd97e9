//! Command-line interface: run from a config file, run zero-config as a
//! sidecar (`--listen` + `--upstream`), or check a config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use churnstile::config::PoolMode;

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

    /// Address for the Prometheus metrics endpoint.
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

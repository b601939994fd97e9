//! The TLS configurations in force, as the protocols use them: how to
//! accept a client of each protocol, and how to reach each database's
//! servers. The core builds them from the configuration (and again on
//! RELOAD) and hands them down; nothing here reads a file.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;

/// PostgreSQL's ALPN protocol name (required for PostgreSQL 17's direct TLS).
pub const POSTGRES_ALPN: &[u8] = b"postgresql";

/// Every TLS configuration in force.
#[derive(Debug, Default)]
pub struct TlsContexts {
    /// `None` when clients may not use TLS (`client_tls_sslmode = "disable"`).
    pub clients: Option<ClientTlsContext>,
    /// By database name; absent for a database whose servers are reached
    /// in plaintext (`disable`, or a Unix socket).
    upstreams: BTreeMap<String, UpstreamTls>,
}

impl TlsContexts {
    pub fn new(
        clients: Option<ClientTlsContext>,
        upstreams: BTreeMap<String, UpstreamTls>,
    ) -> Self {
        TlsContexts { clients, upstreams }
    }

    /// How to reach `database`'s servers over TLS; `None` for plaintext.
    pub fn upstream(&self, database: &str) -> Option<&UpstreamTls> {
        self.upstreams.get(database)
    }
}

/// How churnstile accepts TLS clients.
#[derive(Debug)]
pub struct ClientTlsContext {
    /// Plaintext TCP clients are refused (`require` and stricter).
    pub required: bool,
    /// `client_tls_sslmode` as configured, for messages.
    pub sslmode: &'static str,
    pub postgres: Arc<ServerConfig>,
    pub mysql: Arc<ServerConfig>,
}

/// How churnstile reaches one database's servers over TLS.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// A server that cannot do TLS is an error (`require` and stricter).
    pub required: bool,
    /// `server_tls_sslmode` as configured, and MySQL's name for it.
    pub sslmode: &'static str,
    pub mysql_sslmode: &'static str,
    pub config: Arc<ClientConfig>,
    /// What the certificate must be for under `verify-full`: the host.
    pub server_name: ServerName<'static>,
}

/// The same settings: the same mode and name, and the very same rustls
/// configuration (which has no equality of its own).
impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        (self.required, self.sslmode, &self.server_name)
            == (other.required, other.sslmode, &other.server_name)
            && Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for UpstreamTls {}

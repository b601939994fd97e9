//! How the generic pool opens, checks and closes PostgreSQL server
//! connections, recording each in the registry of open server connections.

use std::sync::Arc;
use std::time::SystemTime;

use super::backend::{ServerConn, UpstreamError, UpstreamTarget};
use crate::pool::Connector;
use crate::ratelimit::{Suppressed, WARNINGS};
use crate::registry::{Endpoint, ServerEntry, ServerRegistry};
use crate::tls::TlsContexts;

/// Opens server connections to one upstream database as one user.
pub struct PgConnector {
    pub(super) target: Arc<UpstreamTarget>,
    /// The pool's (database, user) as clients name them.
    pub(super) pool_name: (String, String),
    pub(super) servers: Arc<ServerRegistry>,
    /// The TLS configurations in force; the pool's database picks its own.
    pub(super) tls: Arc<arc_swap::ArcSwap<TlsContexts>>,
}

impl PgConnector {
    fn upstream(&self) -> Endpoint {
        Endpoint {
            addr: self.target.host.clone(),
            port: self.target.port,
        }
    }
}

impl Connector for PgConnector {
    type Conn = ServerConn;
    type Error = UpstreamError;

    async fn connect(&self) -> Result<ServerConn, UpstreamError> {
        let tls = self.tls.load();
        let conn = ServerConn::connect(&self.target, tls.upstream(&self.pool_name.0)).await;
        match &conn {
            Ok(conn) => self.servers.opened(ServerEntry {
                database: self.pool_name.0.clone(),
                user: self.pool_name.1.clone(),
                upstream: self.upstream(),
                local: Endpoint::local(&conn.stream),
                backend_pid: conn.key.process_id,
                connected_at: SystemTime::now(),
                tls: conn.stream.tls_version(),
            }),
            Err(error) => {
                let upstream = self.target.describe();
                if let Some(suppressed) = WARNINGS.check("server connection failed", &upstream) {
                    tracing::warn!(%upstream, db = %self.target.dbname, %error, "server connection failed{}", Suppressed(suppressed));
                }
            }
        }
        conn
    }

    fn is_healthy(&self, conn: &mut ServerConn) -> bool {
        conn.is_healthy()
    }

    fn close(&self, conn: ServerConn) {
        self.servers.closed(&self.upstream(), conn.key.process_id);
        conn.terminate();
    }

    fn is_transient(&self, error: &UpstreamError) -> bool {
        match error {
            // A TLS failure is a certificate or setting that retrying
            // will not change: clients learn why at once.
            UpstreamError::Connect { .. } | UpstreamError::Io(_) | UpstreamError::Timeout(_) => {
                true
            }
            // Starting up, shutting down, or out of connection slots.
            UpstreamError::Rejected(fields) => {
                matches!(fields.code.as_str(), "57P03" | "57P01" | "53300")
            }
            _ => false,
        }
    }
}

//! How the generic pool opens, checks and closes MySQL server connections,
//! recording each in the registry of open server connections.

use std::sync::Arc;
use std::time::SystemTime;

use super::backend::{ServerConn, UpstreamError, UpstreamTarget};
use crate::pool::Connector;
use crate::ratelimit::{Suppressed, WARNINGS};
use crate::registry::{Endpoint, ServerEntry, ServerRegistry};

/// Opens server connections to one upstream database as one user.
pub(crate) struct MyConnector {
    pub(super) target: Arc<UpstreamTarget>,
    /// The pool's (database, user) as clients name them.
    pub(super) pool_name: (String, String),
    pub(super) servers: Arc<ServerRegistry>,
}

impl MyConnector {
    fn upstream(&self) -> Endpoint {
        Endpoint {
            addr: self.target.host.clone(),
            port: self.target.port,
        }
    }
}

impl Connector for MyConnector {
    type Conn = ServerConn;
    type Error = UpstreamError;

    async fn connect(&self) -> Result<ServerConn, UpstreamError> {
        let conn = ServerConn::connect(&self.target).await;
        match &conn {
            Ok(conn) => self.servers.opened(ServerEntry {
                database: self.pool_name.0.clone(),
                user: self.pool_name.1.clone(),
                upstream: self.upstream(),
                local: Endpoint::local(&conn.io.stream),
                backend_pid: conn.thread_id as i32,
                connected_at: SystemTime::now(),
                tls: conn.io.stream.tls_version(),
            }),
            Err(error) => {
                let upstream = self.target.describe();
                if let Some(suppressed) = WARNINGS.check("server connection failed", &upstream) {
                    tracing::warn!(%upstream, db = %self.target.dbname, %error, "MySQL server connection failed{}", Suppressed(suppressed));
                }
            }
        }
        conn
    }

    fn is_healthy(&self, conn: &mut ServerConn) -> bool {
        conn.is_healthy()
    }

    fn close(&self, conn: ServerConn) {
        self.servers.closed(&self.upstream(), conn.thread_id as i32);
        conn.quit();
    }

    fn is_transient(&self, error: &UpstreamError) -> bool {
        error.is_transient()
    }
}

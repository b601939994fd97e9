//! How the generic pool opens, checks and closes PostgreSQL server connections.

use std::sync::Arc;

use super::backend::{ServerConn, UpstreamError, UpstreamTarget};
use crate::pool::Connector;

/// Opens server connections to one upstream database as one user.
pub struct PgConnector {
    pub target: Arc<UpstreamTarget>,
}

impl Connector for PgConnector {
    type Conn = ServerConn;
    type Error = UpstreamError;

    async fn connect(&self) -> Result<ServerConn, UpstreamError> {
        let conn = ServerConn::connect(&self.target).await;
        if let Err(error) = &conn {
            tracing::warn!(upstream = %self.target.describe(), db = %self.target.dbname, %error, "server connection failed");
        }
        conn
    }

    fn is_healthy(&self, conn: &mut ServerConn) -> bool {
        conn.is_healthy()
    }

    fn close(&self, conn: ServerConn) {
        conn.terminate();
    }

    fn is_transient(&self, error: &UpstreamError) -> bool {
        match error {
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

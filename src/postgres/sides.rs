//! The two sides a session joins: the client (its socket and what
//! churnstile tracks of its session) and the server connection lent to it
//! with the responses it owes. The session moves between states by taking
//! and giving back the second; the relay moves messages between the two.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::backend::ServerConn;
use super::connector::PgConnector;
use super::prepared::StatementDef;
use super::relay::queue::ResponseQueue;
use super::sql::PinReason;
use super::state::ReportedParams;
use super::state::{MAX_CUSTOM_SETTINGS, Settings};
use super::traffic::SessionTraffic;
use super::wire::codec::MessageScanner;
use crate::pool::Lease;
use crate::stream::Stream;

/// The client's side: its socket and what churnstile knows of its session.
pub(super) struct ClientSide {
    pub(super) stream: Stream,
    /// Bytes read from the client and not yet handled.
    pub(super) buf: BytesMut,
    pub(super) scanner: MessageScanner,
    /// ParameterStatus values the client has been told.
    pub(super) seen_params: ReportedParams,
    /// Session settings the client's session has (moved with it).
    pub(super) settings: Settings,
    /// The settings from its startup packet, as the server normalised them:
    /// what RESET, RESET ALL and DISCARD ALL return them to on a direct
    /// connection.
    pub(super) startup_settings: Settings,
    /// Its prepared statements by its own names (transaction pooling).
    pub(super) statements: HashMap<String, Arc<StatementDef>>,
    /// State that keeps it on its server connection, with a statement each.
    pub(super) pins: BTreeMap<PinReason, String>,
    /// Statements since the last probe may have changed session state.
    pub(super) needs_probe: bool,
    /// Custom settings (`myapp.tenant`) the client has touched, which the
    /// probe must ask for by name.
    pub(super) custom_settings: BTreeSet<String>,
    /// The body (query and parameter types) of its unnamed statement, which
    /// PostgreSQL keeps until the next unnamed Parse or simple query: it is
    /// prepared again on whichever server connection the client binds it.
    pub(super) unnamed_statement: Option<Bytes>,
    /// Bytes, queries and transactions not yet added to the pool's counters.
    pub(super) traffic: SessionTraffic,
}

impl ClientSide {
    /// Remembers custom settings the client touched, up to the probe's limit.
    pub(super) fn note_custom_settings(&mut self, names: impl IntoIterator<Item = String>) {
        for name in names {
            if self.custom_settings.len() < MAX_CUSTOM_SETTINGS {
                self.custom_settings.insert(name);
            }
        }
    }
}

/// A server connection lent to the client, and the responses it owes.
pub(super) struct Attached {
    pub(super) pooled: Lease<PgConnector>,
    pub(super) queue: ResponseQueue,
    /// The server's unnamed statement is the client's (or neither has one);
    /// until then it may be another client's.
    pub(super) unnamed_is_clients: bool,
}

impl Attached {
    pub(super) fn conn(&mut self) -> &mut ServerConn {
        self.pooled.conn()
    }
}

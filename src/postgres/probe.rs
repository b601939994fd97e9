//! Learning from the server what session state a client has: after
//! statements that may have changed it (and before its startup settings are
//! remembered), the server connection is asked for its settings, the state
//! that pins the client, and the prepared statements it holds. What is
//! learned is what moves with the client, so rolled-back SETs, SET LOCAL and
//! failed statements are never replayed.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::BytesMut;

use super::backend::ServerConn;
use super::session::{Ending, Session};
use super::sql::PinReason;
use super::state::{Probe, apply_settings_query, parse_probe, probe_query};
use super::wire::messages;

/// Bound on each of churnstile's own state queries on a server connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Session<'_> {
    /// Asks the server what session state the client has now: settings to
    /// move with it, state that pins it, prepared statements that exist.
    pub(super) async fn probe(&mut self) -> Result<(), Ending> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        let conn = server.pooled.conn();
        let probe = probe_server(conn, &self.client.custom_settings)
            .await
            .map_err(Ending::ServerGone)?;
        // A simple query drops the unnamed statement.
        server.unnamed_is_clients = false;
        let Probe {
            mut settings, pins, ..
        } = probe;
        // A startup setting that is gone was reset: on a direct connection
        // that returns it to its startup value, not the server's default.
        let reset: Vec<(String, String)> = self
            .client
            .startup_settings
            .iter()
            .filter(|(name, _)| !settings.contains_key(*name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let mut told = BytesMut::new();
        if let Some(query) = apply_settings_query(&reset) {
            match conn.simple_query(&query, PROBE_TIMEOUT).await {
                Ok(None) => {}
                Ok(Some(error)) => {
                    return Err(Ending::ServerGone(format!(
                        "restoring startup settings failed: {}",
                        error.message
                    )));
                }
                Err(error) => return Err(Ending::ServerGone(error.to_string())),
            }
            settings.extend(reset);
            for (name, value) in conn.state.params.iter() {
                if self.client.seen_params.get(name) != Some(value) {
                    messages::parameter_status(&mut told, name, value);
                }
            }
            self.client.seen_params = conn.state.params.clone();
        }
        told.extend_from_slice(&conn.notifications.split());
        conn.applied = settings.clone();
        self.client.settings = settings;
        self.client.needs_probe = false;
        let load = self.client.pins.remove(&PinReason::Load);
        let previous = std::mem::take(&mut self.client.pins);
        for reason in pins {
            if !previous.contains_key(&reason) {
                self.service.pin_counters.pinned(reason.as_str());
                tracing::debug!(peer = %self.peer, reason = reason.as_str(), "client pinned to its server connection");
            }
            self.client
                .pins
                .insert(reason, previous.get(&reason).cloned().unwrap_or_default());
        }
        if let Some(statement) = load {
            self.client.pins.insert(PinReason::Load, statement);
        }
        self.send_to_client(&told).await?;
        Ok(())
    }
}

/// Asks the server connection for its session state (see [`probe_query`];
/// `custom` names custom settings the client touched) and keeps only the
/// prepared statements it still holds in churnstile's record.
pub(super) async fn probe_server(
    conn: &mut ServerConn,
    custom: &BTreeSet<String>,
) -> Result<Probe, String> {
    let rows = match conn.query_rows(&probe_query(custom), PROBE_TIMEOUT).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(error)) => return Err(format!("session state query failed: {}", error.message)),
        Err(error) => return Err(error.to_string()),
    };
    let probe = parse_probe(&rows);
    conn.statements
        .retain(|name| probe.statements.contains(name));
    Ok(probe)
}

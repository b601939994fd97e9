//! A logged-in client's session, as a state machine read top to bottom:
//! **idle** (no server connection) → **attached** (a server connection
//! from the pool, with the client's settings moved onto it) → **kept**
//! between transactions when the pool mode allows (never in session mode;
//! after each transaction or statement otherwise, unless state that cannot
//! move **pins** the client): idle, but still the client's until the pool
//! wants it back (see `lazy_release`) → back to idle → **releasing** when
//! the client leaves: the server connection is made clean or closed (see
//! `release.rs`). What the client's statements did to its session state is
//! learned from the server in `probe.rs`.

mod lazy_release;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use metrics::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::backend::{ServerConn, UpstreamError};
use super::cancel::{CancelHandle, CancelTarget};
use super::relay;
use super::relay::queue::ResponseQueue;
use super::service::{PgPool, PgService};
use super::sides::{Attached, ClientSide};
use super::sql::custom_setting_name;
use super::startup::send_fatal;
use super::state::ReportedParams;
use super::state::session_settings;
use super::state::{Settings, transition_query};
use super::traffic::SessionTraffic;
use super::wire::codec::{MessageScanner, ProtocolError};
use super::wire::messages::{self, Severity, sqlstate};
use super::wire::startup::Startup;
use crate::config::{PoolMode, PoolSettings};
use crate::metrics::PoolHistograms;
use crate::pool::{CheckoutError, CloseReason, PinnedClient};
use crate::ratelimit::{Suppressed, WARNINGS};
use crate::registry::LiveClient;
use crate::stream::Stream;

/// How much to read from either side at a time.
const READ_CHUNK: usize = 64 * 1024;

/// How a session ended.
#[derive(Debug)]
pub(super) enum Ending {
    /// The client sent Terminate.
    Terminated,
    /// The client closed or broke its connection.
    ClientGone,
    /// The client sent bytes that are not valid protocol.
    ClientProtocol(ProtocolError),
    /// The server closed its connection or broke the protocol.
    ServerGone(String),
    /// No server connection could be had; the client gets this error.
    NoServer { code: String, message: String },
    /// Idle past `client_idle_timeout`.
    IdleTimeout(Duration),
    /// Shutting down and the session is idle.
    Shutdown,
}

impl Ending {
    /// Why the client was disconnected, for `log_disconnections`.
    fn reason(&self) -> &'static str {
        match self {
            Ending::Terminated => "client sent Terminate",
            Ending::ClientGone => "client closed the connection",
            Ending::ClientProtocol(_) => "client broke the protocol",
            Ending::ServerGone(_) => "server connection lost",
            Ending::NoServer { .. } => "no server connection",
            Ending::IdleTimeout(_) => "client_idle_timeout",
            Ending::Shutdown => "shutdown",
        }
    }
}

pub(super) struct Session<'a> {
    pub(super) service: &'a PgService,
    /// The client's pool; `None` when a reload added its database since start.
    pool: Option<PgPool>,
    pub(super) settings: PoolSettings,
    pub(super) client: ClientSide,
    pub(super) server: Option<Attached>,
    cancel: CancelHandle,
    database: String,
    user: String,
    pub(super) peer: &'a str,
    live: &'a LiveClient,
    wait_seconds: Histogram,
    /// Held while the client is pinned, for the pinned-clients gauge.
    pinned: Option<PinnedClient<'a>>,
    /// Relay buffers, reused from one message to the next.
    client_outcome: relay::ClientOutcome,
    server_output: BytesMut,
}

/// Runs a logged-in client's session to its end; returns why it ended.
pub(super) async fn run(
    service: &PgService,
    mut stream: Stream,
    buf: BytesMut,
    startup: Startup,
    peer: &str,
    live: &LiveClient,
) -> &'static str {
    let Some(settings) = service
        .config
        .load()
        .databases
        .get(&startup.database)
        .map(|db| db.pool.clone())
    else {
        send_fatal(
            &mut stream,
            sqlstate::INVALID_CATALOG_NAME,
            "database is not configured",
        )
        .await;
        return "database is not configured";
    };
    let startup_settings = match session_settings(&startup.params) {
        Ok(list) => list,
        Err(error) => {
            send_fatal(
                &mut stream,
                sqlstate::PROTOCOL_VIOLATION,
                &error.to_string(),
            )
            .await;
            return "invalid startup parameter";
        }
    };
    let histograms = PoolHistograms::new(&startup.database, &startup.user);
    let mut session = Session {
        service,
        pool: service.pool(&startup.database, &startup.user),
        settings,
        client: ClientSide {
            stream,
            buf,
            scanner: MessageScanner::default(),
            seen_params: ReportedParams::default(),
            settings: Settings::new(),
            startup_settings: Settings::new(),
            statements: HashMap::new(),
            pins: BTreeMap::new(),
            needs_probe: false,
            custom_settings: BTreeSet::new(),
            unnamed_statement: None,
            traffic: SessionTraffic::new(histograms.transaction_seconds),
        },
        server: None,
        cancel: service.cancels.register(),
        database: startup.database,
        user: startup.user,
        peer,
        live,
        wait_seconds: histograms.wait_seconds,
        pinned: None,
        client_outcome: relay::ClientOutcome::default(),
        server_output: BytesMut::new(),
    };
    let ending = match session.log_in(&startup_settings).await {
        Ok(()) => session.serve().await,
        Err(ending) => ending,
    };
    let reason = ending.reason();
    session.finish(ending).await;
    reason
}

impl Session<'_> {
    pub(super) fn pooling(&self) -> bool {
        self.settings.pool_mode != PoolMode::Session
    }

    /// Attaches a server connection, applies the client's startup settings
    /// and tells the client the true parameter values, its cancel key, and
    /// that it is ready.
    async fn log_in(&mut self, startup_settings: &[(String, String)]) -> Result<(), Ending> {
        let cached = self
            .service
            .normalized_settings(&self.database, &self.user, startup_settings);
        let known = cached.is_some();
        self.client.settings = cached.unwrap_or_else(|| startup_settings.iter().cloned().collect());
        self.client.note_custom_settings(
            startup_settings
                .iter()
                .filter_map(|(name, _)| custom_setting_name(name)),
        );
        self.attach().await?;
        if self.pooling() && !known && !startup_settings.is_empty() {
            self.probe().await?;
            let normalized = self.client.settings.clone();
            self.service.remember_settings(
                &self.database,
                &self.user,
                startup_settings,
                normalized,
            );
        }
        self.client.startup_settings = self.client.settings.clone();
        let mut out = BytesMut::new();
        for (name, value) in self.client.seen_params.iter() {
            messages::parameter_status(&mut out, name, value);
        }
        messages::backend_key_data(
            &mut out,
            self.cancel.key.process_id,
            self.cancel.key.secret_key,
        );
        messages::ready_for_query(&mut out, b'I');
        self.client.traffic.sent(out.len());
        self.send_to_client(&out).await
    }

    /// Writes churnstile's own or forwarded bytes to the client, if any.
    pub(super) async fn send_to_client(&mut self, bytes: &[u8]) -> Result<(), Ending> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.client
            .stream
            .write_all(bytes)
            .await
            .map_err(|_| Ending::ClientGone)
    }

    /// Forwards both ways until one side ends the session.
    async fn serve(&mut self) -> Ending {
        let mut last_activity = Instant::now();
        // Registered once: re-creating it on every turn costs a lock per message.
        let mut shutdown = std::pin::pin!(self.service.shutdown.clone().cancelled_owned());
        loop {
            if let Err(ending) = self.handle_client_bytes().await {
                return ending;
            }
            if let Err(ending) = self.release_when_idle().await {
                return ending;
            }
            // Owns what it waits on, so the server side can be read meanwhile.
            let wanted_back = self
                .server
                .as_ref()
                .and_then(|server| server.pooled.wanted_back());
            let kept = wanted_back.is_some();
            let idle = self
                .server
                .as_mut()
                .is_none_or(|server| server.queue.is_empty() && server.conn().state.is_idle());
            let idle_limit = self.settings.client_idle_timeout;
            let idle_deadline = idle_limit
                .filter(|_| idle)
                .map(|limit| last_activity + limit);
            self.client.buf.reserve(READ_CHUNK);
            let client = &mut self.client;
            let server_read = async {
                match self.server.as_mut() {
                    Some(server) => {
                        let conn = server.pooled.conn();
                        conn.read_buf.reserve(READ_CHUNK);
                        conn.stream.read_buf(&mut conn.read_buf).await
                    }
                    None => std::future::pending().await,
                }
            };
            let wanted_back = async {
                match wanted_back {
                    Some(wanted_back) => wanted_back.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown, if idle => return Ending::Shutdown,
                _ = sleep_until_or_forever(idle_deadline) => {
                    return Ending::IdleTimeout(idle_limit.unwrap_or_default());
                }
                () = wanted_back, if kept => self.give_back_kept().await,
                read = client.stream.read_buf(&mut client.buf) => match read {
                    Ok(0) | Err(_) => return Ending::ClientGone,
                    Ok(read) => {
                        last_activity = Instant::now();
                        self.client.traffic.received(read);
                    }
                },
                read = server_read => match read {
                    _ if kept => self.drop_kept().await,
                    Ok(0) => return Ending::ServerGone("server closed the connection".into()),
                    Err(error) => return Ending::ServerGone(error.to_string()),
                    Ok(_) => {
                        last_activity = Instant::now();
                        if let Err(ending) = self.relay_server_bytes().await {
                            return ending;
                        }
                    }
                },
            }
        }
    }

    /// Handles what the client sent: attaches a server connection first if
    /// the client has none (or takes up the one it kept), then forwards
    /// (and, when pooling, rewrites).
    async fn handle_client_bytes(&mut self) -> Result<(), Ending> {
        if self.client.buf.is_empty() {
            return Ok(());
        }
        let kept = self.server.as_ref().map(|server| server.pooled.is_kept());
        if kept != Some(false) {
            let ready = relay::first_message_ready(&self.client.buf, &self.settings)
                .map_err(Ending::ClientProtocol)?;
            if !ready {
                return Ok(());
            }
            if self.client.buf[0] == b'X' {
                return Err(Ending::Terminated);
            }
            match kept {
                Some(_) => self.reuse_kept(),
                None => self.attach().await?,
            }
        }
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        // Taken while in use; an error ends the session, so it needs no
        // putting back then.
        let mut outcome = std::mem::take(&mut self.client_outcome);
        let relayed = relay::client_to_server(
            &mut self.client,
            server,
            &self.service.statements,
            &self.settings,
            &mut outcome,
        );
        // Whole messages before a protocol error are sent, as PostgreSQL
        // would run them: the server's tracked state counts them, so the
        // release waits only for their answers, not for a timeout.
        let conn = server.pooled.conn();
        if !outcome.to_server.is_empty() {
            conn.stream
                .write_all(&outcome.to_server)
                .await
                .map_err(|e| Ending::ServerGone(e.to_string()))?;
        }
        relayed.map_err(Ending::ClientProtocol)?;
        self.client.traffic.sent(outcome.to_client.len());
        self.send_to_client(&outcome.to_client).await?;
        let terminated = outcome.terminated;
        outcome.recycle();
        self.client_outcome = outcome;
        if terminated {
            Err(Ending::Terminated)
        } else {
            Ok(())
        }
    }

    /// Forwards what the server sent, routed through the response queue.
    /// A transaction that ended is counted before the client hears so.
    async fn relay_server_bytes(&mut self) -> Result<(), Ending> {
        let pooling = self.pooling();
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        let mut out = std::mem::take(&mut self.server_output);
        relay::server_to_client(&mut self.client, server, pooling, &mut out)
            .map_err(|error| Ending::ServerGone(error.to_string()))?;
        self.client.traffic.sent(out.len());
        if self.client.traffic.transaction_ended() {
            self.count_traffic();
        }
        self.send_to_client(&out).await?;
        relay::recycle(&mut out);
        self.server_output = out;
        Ok(())
    }

    /// Adds the session's traffic so far to its pool's counters.
    fn count_traffic(&mut self) {
        let traffic = self.client.traffic.take();
        if let Some(pool) = &self.pool
            && !traffic.is_empty()
        {
            pool.add_traffic(&traffic);
        }
    }

    /// The pool to take a server connection from: the one the session
    /// started with, or, when a reload has replaced or removed it since,
    /// the one in force now (none when the database or user is gone).
    fn current_pool(&mut self) -> Option<PgPool> {
        if self.pool.as_ref().is_some_and(PgPool::is_closed)
            && !self.service.shutdown.is_cancelled()
        {
            self.pool = self.service.pool(&self.database, &self.user);
        }
        self.pool.clone()
    }

    /// Keeps the pinned-clients gauge in step with the client's pins.
    pub(super) fn note_pinned(&mut self) {
        let pinned = !self.client.pins.is_empty();
        if pinned != self.pinned.is_some() {
            self.pinned = pinned.then(|| self.service.pin_counters.hold());
        }
    }

    /// Takes a server connection from the pool and moves the client's
    /// session settings onto it; the client is told parameter values that
    /// differ from what it saw.
    async fn attach(&mut self) -> Result<(), Ending> {
        let pool = self.current_pool().ok_or_else(|| Ending::NoServer {
            code: sqlstate::INVALID_CATALOG_NAME.into(),
            message: format!(
                "database \"{}\" is not configured for user \"{}\"",
                self.database, self.user
            ),
        })?;
        self.live.waiting();
        let asked = Instant::now();
        let checkout = pool.checkout(self.settings.query_wait_timeout).await;
        self.wait_seconds.record(asked.elapsed().as_secs_f64());
        let mut pooled = checkout.map_err(|error| {
            if let Some(suppressed) = WARNINGS.check("client got no server connection", &self.database) {
                tracing::warn!(peer = %self.peer, db = %self.database, user = %self.user, %error, "client got no server connection{}", Suppressed(suppressed));
            }
            no_server(error)
        })?;
        let conn = pooled.conn();
        // Whoever listened on it before has gone or stopped listening.
        conn.notifications.clear();
        self.live.active(conn.key.process_id);
        if let Some(query) =
            transition_query(&conn.applied, &self.client.settings, &conn.state.params)
        {
            match conn
                .simple_query(&query, self.settings.server_connect_timeout)
                .await
            {
                Ok(None) => {}
                Ok(Some(error)) => {
                    return Err(Ending::NoServer {
                        code: error.code,
                        message: error.message,
                    });
                }
                Err(error) => return Err(Ending::ServerGone(error.to_string())),
            }
        }
        // Most attaches find everything already equal: compare before copying.
        if conn.applied != self.client.settings {
            conn.applied = self.client.settings.clone();
        }
        let mut out = BytesMut::new();
        if !conn.state.params.same_as(&mut self.client.seen_params) {
            if !self.client.seen_params.is_empty() {
                for (name, value) in conn.state.params.iter() {
                    if self.client.seen_params.get(name) != Some(value) {
                        messages::parameter_status(&mut out, name, value);
                    }
                }
            }
            self.client.seen_params = conn.state.params.clone();
        }
        self.cancel.attach(Some(cancel_target(conn))).await;
        self.server = Some(Attached {
            pooled,
            queue: ResponseQueue::default(),
            unnamed_is_clients: false,
        });
        self.send_to_client(&out).await?;
        Ok(())
    }

    /// Says goodbye to the client as the ending requires, then returns the
    /// server connection clean or closes it.
    async fn finish(mut self, ending: Ending) {
        self.count_traffic();
        let mid_message = !self.client.scanner.at_boundary();
        let farewell = match &ending {
            Ending::Terminated | Ending::ClientGone => None,
            Ending::ClientProtocol(error) => {
                Some((sqlstate::PROTOCOL_VIOLATION.to_owned(), error.to_string()))
            }
            Ending::IdleTimeout(limit) => Some((
                sqlstate::IDLE_SESSION_TIMEOUT.to_owned(),
                format!("terminating connection due to client_idle_timeout ({limit:?})"),
            )),
            Ending::Shutdown => Some((
                sqlstate::ADMIN_SHUTDOWN.to_owned(),
                "terminating connection due to administrator command".to_owned(),
            )),
            Ending::NoServer { code, message } => Some((code.clone(), message.clone())),
            Ending::ServerGone(reason) => {
                if let Some(suppressed) =
                    WARNINGS.check("server connection lost during session", &self.database)
                {
                    tracing::warn!(peer = %self.peer, db = %self.database, %reason, "server connection lost during session{}", Suppressed(suppressed));
                }
                Some((
                    sqlstate::CONNECTION_FAILURE.to_owned(),
                    format!("server connection lost: {reason}"),
                ))
            }
        };
        if let Some((code, message)) = farewell {
            if self.service.config.load().general.observe.log_pooler_errors {
                tracing::info!(peer = %self.peer, db = %self.database, user = %self.user, sqlstate = %code, "pooler error: {message}");
            }
            let mut out = BytesMut::new();
            messages::error_response(&mut out, Severity::Fatal, &code, &message);
            let _ = self.client.stream.write_all(&out).await;
        }
        self.cancel.attach(None).await;
        let Some(server) = self.server.take() else {
            return;
        };
        if matches!(ending, Ending::ServerGone(_)) {
            server.pooled.discard(CloseReason::Error);
            return;
        }
        self.give_back(server, mid_message).await;
    }
}

/// Where a cancel for the client goes while it uses `conn`.
pub(super) fn cancel_target(conn: &ServerConn) -> CancelTarget {
    CancelTarget {
        upstream: Arc::clone(&conn.target),
        key: conn.key.clone(),
    }
}

/// What the client is told when it got no server connection: the one place
/// a checkout failure becomes a SQLSTATE.
fn no_server(error: CheckoutError<UpstreamError>) -> Ending {
    error.count_rejection();
    let (code, message) = match &error {
        CheckoutError::WaitTimeout(_) => {
            (sqlstate::TOO_MANY_CONNECTIONS.to_owned(), error.to_string())
        }
        CheckoutError::Closed => (sqlstate::CANNOT_CONNECT_NOW.to_owned(), error.to_string()),
        // The upstream's own verdict (e.g. 3D000) helps more than a generic code.
        CheckoutError::Connect(UpstreamError::Rejected(fields)) => (
            fields.code.clone(),
            format!("upstream server: {}", fields.message),
        ),
        _ => (sqlstate::CONNECTION_FAILURE.to_owned(), error.to_string()),
    };
    Ending::NoServer { code, message }
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

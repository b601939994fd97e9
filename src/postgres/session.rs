//! A logged-in client's session in session pooling mode, as a state machine
//! read top to bottom: attach a server connection and apply the client's
//! startup settings, forward in both directions while watching the few
//! messages that matter (Terminate, ReadyForQuery, ParameterStatus), then
//! release the server connection clean — or close it.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::backend::ServerConn;
use super::cancel::CancelTarget;
use super::codec::{MessageScanner, ProtocolError, Verdict};
use super::messages::{self, ErrorFields, Severity, sqlstate};
use super::params::{apply_settings_query, session_settings};
use super::release::clean_for_reuse;
use super::service::PgService;
use super::startup::{Startup, send_fatal};
use crate::pool::{CheckoutError, Pooled};
use crate::stream::Stream;

use super::connector::PgConnector;

/// How much to read from either side at a time.
const READ_CHUNK: usize = 64 * 1024;

/// How a session's forwarding ended.
#[derive(Debug)]
enum Ending {
    /// The client sent Terminate.
    Terminated,
    /// The client closed or broke its connection.
    ClientGone,
    /// The client sent bytes that are not valid protocol.
    ClientProtocol(ProtocolError),
    /// The server closed its connection or broke the protocol.
    ServerGone(String),
    /// Idle past `client_idle_timeout`.
    IdleTimeout(Duration),
    /// Shutting down and the session is idle.
    Shutdown,
}

/// Runs a logged-in client's session to its end.
pub async fn run(
    service: &PgService,
    mut client: Stream,
    client_buf: BytesMut,
    startup: Startup,
    peer: &str,
) {
    let Some(pool) = service.pool(&startup.database, &startup.user) else {
        send_fatal(
            &mut client,
            sqlstate::INVALID_CATALOG_NAME,
            "database is not configured for this user",
        )
        .await;
        return;
    };
    let settings = match session_settings(&startup.params) {
        Ok(settings) => settings,
        Err(error) => {
            send_fatal(
                &mut client,
                sqlstate::PROTOCOL_VIOLATION,
                &error.to_string(),
            )
            .await;
            return;
        }
    };
    let db = service
        .config
        .databases
        .get(&startup.database)
        .map(|db| db.pool.clone());
    let Some(pool_settings) = db else { return };

    let mut server = match pool.checkout(pool_settings.query_wait_timeout).await {
        Ok(server) => server,
        Err(error) => {
            let code = match error {
                CheckoutError::WaitTimeout(_) => sqlstate::TOO_MANY_CONNECTIONS,
                CheckoutError::Closed => sqlstate::CANNOT_CONNECT_NOW,
                CheckoutError::Connect(super::backend::UpstreamError::Rejected(ref fields)) => {
                    // The upstream's own verdict (e.g. 3D000) helps more than a generic code.
                    let message = format!("upstream server: {}", fields.message);
                    send_fatal_owned(&mut client, &fields.code, &message).await;
                    return;
                }
                _ => sqlstate::CONNECTION_FAILURE,
            };
            tracing::warn!(%peer, db = %startup.database, user = %startup.user, %error, "client got no server connection");
            send_fatal(&mut client, code, &error.to_string()).await;
            return;
        }
    };

    if let Err(error) = attach(
        &mut client,
        server.conn(),
        &settings,
        pool_settings.server_connect_timeout,
    )
    .await
    {
        if let Some(fields) = error {
            send_fatal_owned(&mut client, &fields.code, &fields.message).await;
        }
        give_back(server, false, &pool_settings.server_reset_query).await;
        return;
    }

    let cancel = service.cancels.register();
    let mut out = BytesMut::new();
    messages::backend_key_data(&mut out, cancel.key.process_id, cancel.key.secret_key);
    messages::ready_for_query(&mut out, server.conn().tx_status);
    if client.write_all(&out).await.is_err() {
        give_back(server, false, &pool_settings.server_reset_query).await;
        return;
    }
    let conn = server.conn();
    cancel.attach(Some(CancelTarget {
        upstream: conn.target.clone(),
        key: conn.key.clone(),
    }));

    let mut forwarder = Forwarder {
        client,
        client_buf,
        client_scanner: MessageScanner::default(),
    };
    let ending = forwarder
        .forward(server.conn(), service, pool_settings.client_idle_timeout)
        .await;
    cancel.attach(None);
    drop(cancel);

    let mid_message = !forwarder.client_scanner.at_boundary();
    match &ending {
        Ending::Terminated | Ending::ClientGone => {}
        Ending::ClientProtocol(error) => {
            send_fatal(
                &mut forwarder.client,
                sqlstate::PROTOCOL_VIOLATION,
                &error.to_string(),
            )
            .await;
        }
        Ending::IdleTimeout(limit) => {
            let message = format!("terminating connection due to client_idle_timeout ({limit:?})");
            send_fatal(
                &mut forwarder.client,
                sqlstate::IDLE_SESSION_TIMEOUT,
                &message,
            )
            .await;
        }
        Ending::Shutdown => {
            let message = "terminating connection due to administrator command";
            send_fatal(&mut forwarder.client, sqlstate::ADMIN_SHUTDOWN, message).await;
        }
        Ending::ServerGone(reason) => {
            tracing::warn!(%peer, db = %startup.database, %reason, "server connection lost during session");
            send_fatal(
                &mut forwarder.client,
                sqlstate::CONNECTION_FAILURE,
                &format!("server connection lost: {reason}"),
            )
            .await;
            server.discard();
            return;
        }
    }
    drop(forwarder);
    give_back(server, mid_message, &pool_settings.server_reset_query).await;
}

async fn send_fatal_owned(client: &mut Stream, code: &str, message: &str) {
    let mut out = BytesMut::new();
    messages::error_response(&mut out, Severity::Fatal, code, message);
    let _ = client.write_all(&out).await;
}

/// Applies the client's startup settings on the server connection and sends
/// the client every parameter's true value. `Err(Some(_))` carries the
/// server's complaint (e.g. an invalid TimeZone) for the client.
async fn attach(
    client: &mut Stream,
    conn: &mut ServerConn,
    settings: &[(String, String)],
    limit: Duration,
) -> Result<(), Option<ErrorFields>> {
    if let Some(query) = apply_settings_query(settings) {
        match conn.simple_query(&query, limit).await {
            Ok(None) => {}
            Ok(Some(fields)) => return Err(Some(fields)),
            Err(error) => {
                return Err(Some(ErrorFields {
                    severity: "FATAL".into(),
                    code: sqlstate::CONNECTION_FAILURE.into(),
                    message: format!("could not apply startup parameters: {error}"),
                }));
            }
        }
    }
    let mut out = BytesMut::new();
    for (name, value) in &conn.params {
        messages::parameter_status(&mut out, name, value);
    }
    client.write_all(&out).await.map_err(|_| None)
}

/// Returns the server connection to its pool if it can be made clean.
async fn give_back(mut server: Pooled<PgConnector>, mid_message: bool, reset_query: &str) {
    match clean_for_reuse(server.conn(), mid_message, reset_query).await {
        Ok(()) => server.release(),
        Err(error) => {
            tracing::info!(%error, "closing server connection instead of reusing it");
            server.discard();
        }
    }
}

/// The client half of a session and what is known of its byte stream.
struct Forwarder {
    client: Stream,
    client_buf: BytesMut,
    client_scanner: MessageScanner,
}

impl Forwarder {
    /// Forwards both ways until one side ends the session. Server bytes not
    /// yet forwarded, and the framing state, are left on `conn` so the
    /// reset that follows reads on from exactly there.
    async fn forward(
        &mut self,
        conn: &mut ServerConn,
        service: &PgService,
        idle_limit: Option<Duration>,
    ) -> Ending {
        let mut server_buf = std::mem::take(&mut conn.read_buf);
        let mut server_scanner = std::mem::take(&mut conn.scanner);
        let ending = self
            .forward_with(
                conn,
                &mut server_buf,
                &mut server_scanner,
                service,
                idle_limit,
            )
            .await;
        conn.read_buf = server_buf;
        conn.scanner = server_scanner;
        ending
    }

    async fn forward_with(
        &mut self,
        conn: &mut ServerConn,
        server_buf: &mut BytesMut,
        server_scanner: &mut MessageScanner,
        service: &PgService,
        idle_limit: Option<Duration>,
    ) -> Ending {
        let mut last_activity = Instant::now();
        loop {
            if !self.client_buf.is_empty() {
                match self.relay_client_bytes(conn).await {
                    Ok(true) => return Ending::Terminated,
                    Ok(false) => {}
                    Err(ending) => return ending,
                }
            }
            let idle = conn.is_idle();
            let idle_deadline = idle_limit
                .filter(|_| idle)
                .map(|limit| last_activity + limit);
            self.client_buf.reserve(READ_CHUNK);
            server_buf.reserve(READ_CHUNK);
            tokio::select! {
                _ = service.shutdown.cancelled(), if idle => return Ending::Shutdown,
                _ = sleep_until_or_forever(idle_deadline) => {
                    return Ending::IdleTimeout(idle_limit.unwrap_or_default());
                }
                read = self.client.read_buf(&mut self.client_buf) => {
                    match read {
                        Ok(0) | Err(_) => return Ending::ClientGone,
                        Ok(_) => last_activity = Instant::now(),
                    }
                }
                read = conn.stream.read_buf(server_buf) => {
                    match read {
                        Ok(0) => return Ending::ServerGone("server closed the connection".into()),
                        Err(error) => return Ending::ServerGone(error.to_string()),
                        Ok(_) => {}
                    }
                    let scanned = server_scanner.scan(server_buf, ServerConn::inspects, |tag, body| {
                        conn.observe(tag, body);
                        Verdict::Forward
                    });
                    let forward = match scanned {
                        Ok(scanned) => scanned.forward,
                        Err(error) => return Ending::ServerGone(error.to_string()),
                    };
                    let written = self.client.write_all(&server_buf[..forward]).await;
                    // Scanned and observed: these bytes are done with even
                    // when the client is gone.
                    server_buf.advance(forward);
                    if written.is_err() {
                        return Ending::ClientGone;
                    }
                    last_activity = Instant::now();
                }
            }
        }
    }

    /// Forwards complete (or streaming) client messages to the server.
    /// Returns true when the client sent Terminate.
    async fn relay_client_bytes(&mut self, conn: &mut ServerConn) -> Result<bool, Ending> {
        let scanned = self
            .client_scanner
            .scan(
                &self.client_buf,
                |tag| tag == b'X',
                |tag, _| {
                    if tag == b'X' {
                        Verdict::StopBefore
                    } else {
                        conn.note_sent(tag);
                        Verdict::Forward
                    }
                },
            )
            .map_err(Ending::ClientProtocol)?;
        if scanned.forward > 0 {
            if let Err(error) = conn
                .stream
                .write_all(&self.client_buf[..scanned.forward])
                .await
            {
                return Err(Ending::ServerGone(error.to_string()));
            }
            self.client_buf.advance(scanned.forward);
        }
        Ok(scanned.stopped)
    }
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

//! One PostgreSQL client connection from its first byte to its close:
//! the opening (startup, cancel or TLS request), authentication within
//! `client_login_timeout`, then the session. A login to the admin
//! database is handed back to the caller, which owns the console.

use std::sync::Arc;

use bytes::BytesMut;

use super::login::{self, MockSecret, challenge_for};
use super::service::PgService;
use super::session;
use super::startup::{self, Opening, Startup, StartupError};
use super::wire::messages::sqlstate;
use crate::config::{AuthType, is_admin_database};
use crate::stream::Stream;

/// An authenticated admin user, for the console to serve.
pub struct ConsoleLogin {
    pub stream: Stream,
    /// What the client sent after its login, not yet read.
    pub buf: BytesMut,
    pub peer: String,
    pub user: String,
}

/// Serves one client connection until it closes; returns it instead when
/// it logged in to the admin console.
pub async fn serve(
    service: Arc<PgService>,
    mut stream: Stream,
    peer: String,
) -> Option<ConsoleLogin> {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let login_timeout = service.config.load().pool.client_login_timeout;
    let tls = service.tls.load_full();
    let login = async {
        match startup::read_opening(&mut stream, &mut buf, tls.clients.as_ref()).await? {
            Opening::Cancel {
                process_id,
                secret_key,
            } => {
                service.cancels.cancel(process_id, secret_key).await;
                Ok(None)
            }
            Opening::Startup(startup) => log_in(&service, &mut stream, &mut buf, startup)
                .await
                .map(Some),
        }
    };
    let outcome = match login_timeout {
        Some(limit) => tokio::time::timeout(limit, login)
            .await
            .unwrap_or_else(|_| {
                Err(StartupError::Refused {
                    code: sqlstate::PROTOCOL_VIOLATION,
                    message: format!(
                        "client did not log in within client_login_timeout ({limit:?})"
                    ),
                })
            }),
        None => login.await,
    };
    match outcome {
        Ok(Some(startup)) if is_admin_database(&startup.database) => {
            return Some(ConsoleLogin {
                stream,
                buf,
                peer,
                user: startup.user,
            });
        }
        Ok(Some(startup)) => {
            let application_name = startup
                .params
                .iter()
                .find(|(name, _)| name == "application_name")
                .map_or("", |(_, value)| value.as_str());
            let mut client = service.clients.logged_in(
                crate::metrics::PROTOCOL_POSTGRES,
                &startup.database,
                &startup.user,
                application_name,
                &stream,
            );
            // KILL ends the session where it stands; dropping it closes
            // the server connection it holds.
            let reason = tokio::select! {
                reason = session::run(&service, stream, buf, startup, &peer, &client) => reason,
                () = client.killed() => {
                    tracing::info!(%peer, "client killed from the admin console");
                    "killed from the admin console"
                }
            };
            client.ending(reason);
        }
        Ok(None) | Err(StartupError::Closed) | Err(StartupError::Io(_)) => {}
        Err(StartupError::Tls(error)) => {
            tracing::debug!(%peer, %error, "client TLS handshake failed");
            let protocol = crate::metrics::PROTOCOL_POSTGRES;
            crate::metrics::tls_handshake_failed(protocol, "client", error.reason());
        }
        Err(StartupError::Refused { code, message }) => {
            tracing::debug!(%peer, %code, reason = %message, "client login refused");
            crate::metrics::login_refused(code);
            startup::send_fatal(&mut stream, code, &message).await;
        }
    }
    None
}

/// Authenticates the client and checks its database exists; a client
/// that fails here never touches an upstream connection.
async fn log_in(
    service: &PgService,
    stream: &mut Stream,
    buf: &mut BytesMut,
    startup: Startup,
) -> Result<Startup, StartupError> {
    let refused = |code, message: String| StartupError::Refused { code, message };
    let config = service.config.load_full();
    let verifiers = service.derived_verifiers.load_full();
    let user = config.users.get(&startup.user);
    let auth_type = config.general.auth_type;
    if user.is_none() && auth_type == AuthType::Trust {
        // Trust asks nothing to hide a name behind.
        return Err(refused(
            sqlstate::INVALID_AUTHORIZATION,
            format!("role \"{}\" does not exist", startup.user),
        ));
    }
    let secret = user.and_then(|user| user.secret.as_ref());
    let mock;
    let challenge = match challenge_for(auth_type, secret, verifiers.get(&startup.user)) {
        Some(challenge) => challenge,
        None => {
            mock = MockSecret::for_user(auth_type, &startup.user);
            mock.challenge()
        }
    };
    login::authenticate(stream, buf, &startup.user, challenge)
        .await
        .map_err(|error| match error {
            login::LoginError::Closed => StartupError::Closed,
            login::LoginError::Io(io) => StartupError::Io(io),
            other => refused(other.sqlstate(), other.to_string()),
        })?;
    if is_admin_database(&startup.database) {
        return if config.general.observe.may_open_console(&startup.user) {
            Ok(startup)
        } else {
            Err(refused(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "user \"{}\" may not use the admin console (not in [general] admin_users or stats_users)",
                    startup.user
                ),
            ))
        };
    }
    if !config.databases.contains_key(&startup.database) {
        return Err(refused(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{}\" does not exist", startup.database),
        ));
    }
    Ok(startup)
}

/// Tells a client over `max_client_conn` so, as PostgreSQL would, and
/// closes it.
pub async fn refuse_too_many(stream: Stream) {
    startup::refuse_connection(
        stream,
        sqlstate::TOO_MANY_CONNECTIONS,
        "no more connections allowed (max_client_conn)",
    )
    .await;
}

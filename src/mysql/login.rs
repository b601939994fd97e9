//! The client's login: churnstile's HandshakeV10 (own scramble and
//! connection id), the client's HandshakeResponse41, and authentication with
//! mysql_native_password or caching_sha2_password (fast path, or full
//! authentication through the RSA public-key exchange), switching plugins
//! when the stored secret needs another. Also used by COM_CHANGE_USER.

use bytes::{BufMut, BytesMut};

use super::auth::{self, caching_sha2, native};
use super::packet_stream::PacketStream;
use super::service::MySqlService;
use super::wire::errors::{self, ErrorCode};
use super::wire::flags::{capability, status};
use super::wire::handshake::{
    AUTH_MORE_DATA, AuthSwitchRequest, CACHING_SHA2_PASSWORD, FAST_AUTH_OK, HandshakeResponse,
    NATIVE_PASSWORD, PERFORM_FULL_AUTH, REQUEST_PUBLIC_KEY, ServerHandshake, is_ssl_request,
};
use super::wire::response::{ErrPacket, ok_payload};
use crate::config::{AuthType, ClientSecret, Config, UserConfig};
use crate::stream::Stream;

/// What churnstile tells clients it can do. SSL is not offered until TLS
/// exists; compression is never offered.
pub(super) const SERVER_CAPABILITIES: u32 = capability::LONG_PASSWORD
    | capability::FOUND_ROWS
    | capability::LONG_FLAG
    | capability::CONNECT_WITH_DB
    | capability::LOCAL_FILES
    | capability::PROTOCOL_41
    | capability::INTERACTIVE
    | capability::TRANSACTIONS
    | capability::SECURE_CONNECTION
    | capability::MULTI_STATEMENTS
    | capability::MULTI_RESULTS
    | capability::PS_MULTI_RESULTS
    | capability::PLUGIN_AUTH
    | capability::CONNECT_ATTRS
    | capability::PLUGIN_AUTH_LENENC_DATA
    | capability::SESSION_TRACK
    | capability::DEPRECATE_EOF;

/// The version clients see: MySQL 5.7-compatible, so they use nothing
/// newer than what every MySQL 5.7+/MariaDB upstream understands.
pub(super) const SERVER_VERSION: &str = concat!("5.7.99-churnstile-", env!("CARGO_PKG_VERSION"));

/// utf8mb4_general_ci.
const HANDSHAKE_CHARSET: u8 = 45;

/// Longest auth exchange packet accepted.
const MAX_AUTH_PACKET: usize = 64 * 1024;

/// A client that logged in.
#[derive(Debug, Clone)]
pub(super) struct Client {
    pub(super) user: String,
    /// Churnstile's database name.
    pub(super) database: String,
    /// Capabilities both sides agreed on.
    pub(super) capabilities: u32,
    pub(super) charset: u8,
    /// The `program_name` connection attribute, if the client sent one.
    pub(super) program_name: String,
}

/// Who is on the other end of a client connection, as the login needs it.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    /// The address as logged.
    pub(super) addr: String,
    /// The host as MySQL names it in "Access denied for 'user'@'host'".
    pub(super) host: String,
    /// The password may travel in clear: a Unix socket, or loopback
    /// traffic, which never leaves the host either.
    pub(super) secure_transport: bool,
}

impl Peer {
    pub(super) fn of(stream: &Stream, addr: String) -> Peer {
        let over_unix_socket = matches!(stream, Stream::Unix(_));
        let secure_transport = over_unix_socket
            || (addr.parse::<std::net::SocketAddr>()).is_ok_and(|addr| addr.ip().is_loopback());
        let host = if over_unix_socket {
            "localhost".to_owned()
        } else {
            (addr
                .rsplit_once(':')
                .map_or(addr.as_str(), |(host, _)| host))
            .trim_matches(['[', ']'])
            .to_owned()
        };
        Peer {
            addr,
            host,
            secure_transport,
        }
    }
}

/// Why a login failed; `error` is what the client is told.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoginError {
    #[error("{}", .0.message)]
    Refused(ErrPacket),
    #[error("client closed the connection during login")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl LoginError {
    fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        LoginError::Refused(ErrPacket::new(code, message))
    }
}

/// Runs the handshake and authentication; on success the client has its
/// OK packet. On failure the caller sends `LoginError::Refused`'s packet
/// with the returned sequence id.
pub(super) async fn log_in(
    io: &mut PacketStream,
    service: &MySqlService,
    connection_id: u32,
    peer_host: &str,
    secure_transport: bool,
) -> Result<Client, (LoginError, u8)> {
    let config = service.config.load_full();
    let nonce = auth::new_scramble();
    let greeting = ServerHandshake {
        server_version: SERVER_VERSION.to_owned(),
        connection_id,
        scramble: nonce,
        capabilities: SERVER_CAPABILITIES,
        charset: HANDSHAKE_CHARSET,
        status: status::AUTOCOMMIT,
        auth_plugin: config.general.mysql_auth_plugin.name().to_owned(),
    };
    let mut payload = BytesMut::new();
    greeting.encode(&mut payload);
    io.send(0, &payload).await.map_err(|e| (e.into(), 0))?;
    let (header, packet) = read_auth_packet(io).await.map_err(|e| (e, 1))?;
    let seq = header.wrapping_add(1);
    if is_ssl_request(&packet) {
        return Err((
            LoginError::refused(
                errors::HANDSHAKE_ERROR,
                "churnstile does not offer TLS to MySQL clients yet; connect with TLS disabled \
                 (e.g. --ssl-mode=DISABLED or --skip-ssl)",
            ),
            seq,
        ));
    }
    let response = HandshakeResponse::decode(&packet).map_err(|error| {
        (
            LoginError::refused(errors::HANDSHAKE_ERROR, format!("bad handshake: {error}")),
            seq,
        )
    })?;
    let capabilities = response.capabilities & SERVER_CAPABILITIES;
    let (user, user_config) =
        find_user(&config, &response.user, peer_host, &response.auth_response)
            .map_err(|e| (e, seq))?;
    let plugin = response.auth_plugin.as_deref().unwrap_or(NATIVE_PASSWORD);
    let seq = authenticate(
        io,
        service,
        &config,
        Attempt {
            user: &user,
            secret: user_config.secret.as_ref(),
            plugin,
            response: &response.auth_response,
            nonce: &nonce,
            seq,
            peer_host,
            secure_transport,
        },
    )
    .await?;
    let database =
        choose_database(&config, response.database.as_deref(), &user).map_err(|e| (e, seq))?;
    let ok = ok_payload(0, 0, status::AUTOCOMMIT, 0);
    io.send(seq, &ok).await.map_err(|e| (e.into(), seq))?;
    let program_name = response
        .attributes
        .iter()
        .find(|(key, _)| key == "program_name")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    Ok(Client {
        user,
        database,
        capabilities,
        charset: response.charset,
        program_name,
    })
}

/// One authentication exchange (login or COM_CHANGE_USER).
pub(super) struct Attempt<'a> {
    pub(super) user: &'a str,
    pub(super) secret: Option<&'a ClientSecret>,
    /// The plugin the client's `response` was made with.
    pub(super) plugin: &'a str,
    pub(super) response: &'a [u8],
    pub(super) nonce: &'a [u8],
    /// Sequence id of churnstile's next packet.
    pub(super) seq: u8,
    pub(super) peer_host: &'a str,
    pub(super) secure_transport: bool,
}

/// Checks the client's proof; returns the sequence id for the final OK.
pub(super) async fn authenticate(
    io: &mut PacketStream,
    service: &MySqlService,
    config: &Config,
    attempt: Attempt<'_>,
) -> Result<u8, (LoginError, u8)> {
    let Attempt {
        user,
        secret,
        mut plugin,
        mut response,
        nonce,
        mut seq,
        peer_host,
        secure_transport,
    } = attempt;
    let denied = |seq, sent_password: bool| {
        (
            LoginError::refused(
                errors::ACCESS_DENIED,
                access_denied(user, peer_host, sent_password),
            ),
            seq,
        )
    };
    if config.general.auth_type == AuthType::Trust {
        return Ok(seq);
    }
    let Some(secret) = secret else {
        return Err(denied(seq, !response.is_empty()));
    };
    let wanted = match (secret, plugin) {
        (ClientSecret::Plain(_), NATIVE_PASSWORD | CACHING_SHA2_PASSWORD) => plugin,
        (ClientSecret::MysqlNative(_), _) => NATIVE_PASSWORD,
        (ClientSecret::Plain(_), _) => config.general.mysql_auth_plugin.name(),
        (ClientSecret::Md5(_) | ClientSecret::Scram(_), _) => {
            tracing::warn!(%user, "MySQL client for a user whose secret is PostgreSQL-only (md5/SCRAM); give a plaintext password or a *HEX mysql_native_password hash");
            return Err(denied(seq, !response.is_empty()));
        }
    };
    let switched;
    if wanted != plugin {
        let switch = AuthSwitchRequest {
            plugin: wanted.to_owned(),
            data: nonce.to_vec(),
        };
        let mut payload = BytesMut::new();
        switch.encode(&mut payload);
        io.send(seq, &payload).await.map_err(|e| (e.into(), seq))?;
        let (header, packet) = read_auth_packet(io).await.map_err(|e| (e, seq))?;
        seq = header.wrapping_add(1);
        switched = packet;
        response = &switched;
        plugin = wanted;
    }
    let verified = match (secret, plugin) {
        (ClientSecret::MysqlNative(hash), _) => native::verify(hash, nonce, response),
        (ClientSecret::Plain(password), NATIVE_PASSWORD) => {
            native::verify(&native::stored_hash(password.as_bytes()), nonce, response)
        }
        (ClientSecret::Plain(password), _) => {
            match caching_sha2_exchange(
                io,
                service,
                user,
                password,
                nonce,
                response,
                seq,
                secure_transport,
            )
            .await
            {
                Ok((verified, next)) => {
                    seq = next;
                    verified
                }
                Err(error) => return Err((error, seq)),
            }
        }
        _ => false,
    };
    if verified {
        Ok(seq)
    } else {
        Err(denied(seq, !response.is_empty()))
    }
}

/// caching_sha2_password as MySQL runs it: the fast path once the user has
/// authenticated fully since churnstile started, otherwise full
/// authentication (the password in clear over a Unix socket or loopback,
/// or RSA-encrypted with churnstile's key). Returns (verified, next seq).
#[allow(clippy::too_many_arguments)]
async fn caching_sha2_exchange(
    io: &mut PacketStream,
    service: &MySqlService,
    user: &str,
    password: &str,
    nonce: &[u8],
    response: &[u8],
    mut seq: u8,
    secure_transport: bool,
) -> Result<(bool, u8), LoginError> {
    if service.sha2_cached(user) {
        if !caching_sha2::verify_fast(password.as_bytes(), nonce, response) {
            return Ok((false, seq));
        }
        seq = io.send(seq, &[AUTH_MORE_DATA, FAST_AUTH_OK]).await?;
        return Ok((true, seq));
    }
    io.send(seq, &[AUTH_MORE_DATA, PERFORM_FULL_AUTH]).await?;
    let (header, packet) = read_auth_packet(io).await?;
    seq = header.wrapping_add(1);
    let clear = if packet[..] == [REQUEST_PUBLIC_KEY] {
        let key = service.rsa_key().await.map_err(|error| {
            LoginError::refused(
                errors::UNKNOWN_ERROR,
                format!("churnstile has no RSA key: {error}"),
            )
        })?;
        let mut reply = BytesMut::new();
        reply.put_u8(AUTH_MORE_DATA);
        reply.put_slice(key.public_key_pem().as_bytes());
        io.send(seq, &reply).await?;
        let (header, encrypted) = read_auth_packet(io).await?;
        seq = header.wrapping_add(1);
        match key.decrypt_password(&encrypted, nonce) {
            Ok(clear) => clear,
            Err(_) => return Ok((false, seq)),
        }
    } else if secure_transport {
        // A Unix socket or loopback: the password may come in clear.
        let mut clear = packet.to_vec();
        if clear.last() == Some(&0) {
            clear.pop();
        }
        clear
    } else {
        return Err(LoginError::refused(
            errors::ACCESS_DENIED,
            "caching_sha2_password full authentication over TCP from another host needs the \
             RSA public key exchange (TLS is not offered); the client sent its password \
             unencrypted, which churnstile refuses",
        ));
    };
    let verified = clear == password.as_bytes();
    if verified {
        service.sha2_remember(user);
    }
    Ok((verified, seq))
}

/// Reads one authentication packet, bounded in size.
async fn read_auth_packet(io: &mut PacketStream) -> Result<(u8, bytes::Bytes), LoginError> {
    let (header, packet) = io.read_packet().await.map_err(|error| {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            LoginError::Closed
        } else {
            LoginError::Io(error)
        }
    })?;
    if header.len > MAX_AUTH_PACKET {
        return Err(LoginError::refused(
            errors::NET_PACKET_TOO_LARGE,
            "login packet too large",
        ));
    }
    Ok((header.seq, packet))
}

pub(super) fn access_denied(user: &str, host: &str, sent_password: bool) -> String {
    let using = if sent_password { "YES" } else { "NO" };
    format!("Access denied for user '{user}'@'{host}' (using password: {using})")
}

/// The configured user; unknown users get the same error as a wrong password.
fn find_user<'a>(
    config: &'a Config,
    user: &str,
    peer_host: &str,
    response: &[u8],
) -> Result<(String, &'a UserConfig), LoginError> {
    match config.users.get(user) {
        Some(found) => Ok((user.to_owned(), found)),
        None => Err(LoginError::refused(
            errors::ACCESS_DENIED,
            access_denied(user, peer_host, !response.is_empty()),
        )),
    }
}

/// The MySQL database the client asked for, or the only one configured.
pub(super) fn choose_database(
    config: &Config,
    asked: Option<&str>,
    user: &str,
) -> Result<String, LoginError> {
    let mysql = || {
        (config.databases.iter())
            .filter(|(_, db)| db.protocol == crate::config::Protocol::Mysql)
            .map(|(name, _)| name)
    };
    match asked.filter(|name| !name.is_empty()) {
        Some(name) if mysql().any(|known| known == name) => Ok(name.to_owned()),
        Some(name) => Err(LoginError::refused(
            errors::BAD_DB,
            format!("Unknown database '{name}'"),
        )),
        None => {
            let mut names = mysql();
            match (names.next(), names.next()) {
                (Some(only), None) => Ok(only.clone()),
                _ => Err(LoginError::refused(
                    errors::NO_DB_SELECTED,
                    format!(
                        "No database selected: churnstile serves several MySQL databases; \
                         user '{user}' must name one when connecting"
                    ),
                )),
            }
        }
    }
}

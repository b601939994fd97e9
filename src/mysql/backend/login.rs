//! Logging in to an upstream server as the pool's user: the
//! HandshakeResponse41, plugin switches, caching_sha2_password's fast and
//! full authentication (the password in clear over a Unix socket, otherwise
//! RSA-encrypted with the server's key), and logging in again with
//! COM_CHANGE_USER on servers that do not know COM_RESET_CONNECTION.

use bytes::{BufMut, BytesMut};

use super::{ServerConn, UpstreamError, UpstreamTarget};
use crate::mysql::auth::{caching_sha2, encrypt_password, native};
use crate::mysql::prepared::ServerStatements;
use crate::mysql::state::SessionState;
use crate::mysql::wire::command::COM_CHANGE_USER;
use crate::mysql::wire::flags::capability;
use crate::mysql::wire::handshake::{
    AUTH_MORE_DATA, AuthSwitchRequest, CACHING_SHA2_PASSWORD, FAST_AUTH_OK, HandshakeResponse,
    NATIVE_PASSWORD, PERFORM_FULL_AUTH, REQUEST_PUBLIC_KEY, ServerHandshake,
};
use crate::mysql::wire::response::{EOF_HEADER, ERR_HEADER, ErrPacket, OK_HEADER};
use crate::mysql::wire::{WireError, lenenc};

/// utf8mb4_general_ci, which MySQL 5.5+ and every MariaDB know.
pub(super) const BASELINE_CHARSET_ID: u8 = 45;

impl ServerConn {
    /// Answers the server's greeting; returns once the server accepted.
    pub(super) async fn log_in(
        &mut self,
        greeting: &ServerHandshake,
        seq: u8,
    ) -> Result<(), UpstreamError> {
        let password = self.target.password.clone().unwrap_or_default();
        let plugin = login_plugin(&greeting.auth_plugin);
        self.auth_plugin = plugin.to_owned();
        let response = HandshakeResponse {
            capabilities: self.capabilities,
            max_packet_size: 1 << 30,
            charset: BASELINE_CHARSET_ID,
            user: self.target.user.clone(),
            auth_response: scramble(plugin, password.as_bytes(), &greeting.scramble),
            database: Some(self.target.dbname.clone()),
            auth_plugin: Some(plugin.to_owned()),
            attributes: vec![
                ("_client_name".to_owned(), "churnstile".to_owned()),
                (
                    "_client_version".to_owned(),
                    env!("CARGO_PKG_VERSION").to_owned(),
                ),
            ],
        };
        let mut payload = BytesMut::new();
        response.encode(&mut payload);
        self.io.send(seq, &payload).await?;
        self.finish_auth(greeting.scramble.to_vec(), plugin.to_owned())
            .await
    }

    /// Answers the server until it accepts or refuses the login: plugin
    /// switches and caching_sha2_password's fast or full authentication.
    async fn finish_auth(
        &mut self,
        mut nonce: Vec<u8>,
        mut plugin: String,
    ) -> Result<(), UpstreamError> {
        let password = self.target.password.clone().unwrap_or_default();
        loop {
            let (header, packet) = self.io.read_packet().await?;
            let seq = header.seq.wrapping_add(1);
            match packet.first() {
                Some(&OK_HEADER) => return Ok(()),
                Some(&ERR_HEADER) => {
                    return Err(UpstreamError::Rejected(ErrPacket::decode(&packet)?));
                }
                Some(&EOF_HEADER) => {
                    let switch = AuthSwitchRequest::decode(&packet)?;
                    if switch.plugin != NATIVE_PASSWORD && switch.plugin != CACHING_SHA2_PASSWORD {
                        return Err(UpstreamError::Unsupported(format!(
                            "asks for authentication plugin {:?}; churnstile logs in with \
                             mysql_native_password or caching_sha2_password",
                            switch.plugin
                        )));
                    }
                    nonce = switch.data;
                    plugin = switch.plugin;
                    let answer = scramble(&plugin, password.as_bytes(), &nonce);
                    self.io.send(seq, &answer).await?;
                }
                Some(&AUTH_MORE_DATA) if plugin == CACHING_SHA2_PASSWORD => match packet.get(1) {
                    Some(&FAST_AUTH_OK) => {}
                    Some(&PERFORM_FULL_AUTH) => {
                        self.send_full_auth(seq, &password, &nonce).await?;
                    }
                    _ => {
                        return Err(UpstreamError::Malformed(WireError::Malformed(
                            "unexpected caching_sha2_password message",
                        )));
                    }
                },
                _ => {
                    return Err(UpstreamError::Malformed(WireError::Malformed(
                        "unexpected packet during login",
                    )));
                }
            }
        }
    }

    /// caching_sha2_password full authentication: the password in clear
    /// over a Unix socket, otherwise encrypted with the server's RSA key.
    async fn send_full_auth(
        &mut self,
        seq: u8,
        password: &str,
        nonce: &[u8],
    ) -> Result<(), UpstreamError> {
        let mut clear = password.as_bytes().to_vec();
        clear.push(0);
        // Over TLS, as over a Unix socket, the channel protects the password.
        if self.target.is_unix_socket() || self.io.stream.tls_version().is_some() {
            self.io.send(seq, &clear).await?;
            return Ok(());
        }
        self.io.send(seq, &[REQUEST_PUBLIC_KEY]).await?;
        let (header, packet) = self.io.read_packet().await?;
        if packet.first() == Some(&ERR_HEADER) {
            return Err(UpstreamError::Rejected(ErrPacket::decode(&packet)?));
        }
        let pem = packet
            .strip_prefix(&[AUTH_MORE_DATA])
            .and_then(|pem| std::str::from_utf8(pem).ok())
            .ok_or(UpstreamError::Malformed(WireError::Malformed(
                "public key reply is not AuthMoreData with a PEM key",
            )))?;
        let encrypted = encrypt_password(password.as_bytes(), nonce, pem).map_err(|error| {
            UpstreamError::Unsupported(format!(
                "sent an RSA public key churnstile cannot use: {error}"
            ))
        })?;
        self.io.send(header.seq.wrapping_add(1), &encrypted).await?;
        Ok(())
    }

    /// Logs in again as the same user (COM_CHANGE_USER), which resets the
    /// session as COM_RESET_CONNECTION does, then sets the baseline.
    pub(super) async fn change_user_reset(&mut self) -> Result<(), UpstreamError> {
        let password = self.target.password.clone().unwrap_or_default();
        let plugin = self.auth_plugin.clone();
        let payload = change_user_payload(
            &self.target,
            &plugin,
            &scramble(&plugin, password.as_bytes(), &self.scramble),
            self.capabilities,
        );
        self.io.send(0, &payload).await?;
        self.finish_auth(self.scramble.to_vec(), plugin).await?;
        self.state = SessionState::baseline(Some(self.target.dbname.clone()));
        self.statements = ServerStatements::default();
        self.set_baseline().await
    }
}

/// The plugin churnstile answers a greeting with: anything but
/// caching_sha2_password gets a native answer (the server switches if it must).
fn login_plugin(announced: &str) -> &'static str {
    match announced {
        CACHING_SHA2_PASSWORD => CACHING_SHA2_PASSWORD,
        _ => NATIVE_PASSWORD,
    }
}

/// COM_CHANGE_USER logging in again as `target`'s user.
fn change_user_payload(
    target: &UpstreamTarget,
    plugin: &str,
    auth: &[u8],
    capabilities: u32,
) -> BytesMut {
    let mut payload = BytesMut::new();
    payload.put_u8(COM_CHANGE_USER);
    payload.put_slice(target.user.as_bytes());
    payload.put_u8(0);
    let auth = &auth[..auth.len().min(255)];
    payload.put_u8(auth.len() as u8);
    payload.put_slice(auth);
    payload.put_slice(target.dbname.as_bytes());
    payload.put_u8(0);
    payload.put_u16_le(u16::from(BASELINE_CHARSET_ID));
    payload.put_slice(plugin.as_bytes());
    payload.put_u8(0);
    if capabilities & capability::CONNECT_ATTRS != 0 {
        lenenc::put_int(&mut payload, 0);
    }
    payload
}

/// The auth response for `plugin`; an empty password answers with nothing.
fn scramble(plugin: &str, password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    match plugin {
        CACHING_SHA2_PASSWORD => caching_sha2::scramble(password, nonce).to_vec(),
        _ => native::scramble(password, nonce).to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_user_logs_in_again_as_the_same_user_and_schema() {
        let target = UpstreamTarget {
            host: "127.0.0.1".into(),
            port: 3306,
            dbname: "app".into(),
            user: "bob".into(),
            password: Some("pw".into()),
            found_rows: false,
            tls: None,
        };
        let auth = native::scramble(b"pw", &[7; 20]);
        let payload =
            change_user_payload(&target, NATIVE_PASSWORD, &auth, capability::CONNECT_ATTRS);
        let mut expected = vec![COM_CHANGE_USER];
        expected.extend_from_slice(b"bob\0");
        expected.push(20);
        expected.extend_from_slice(&auth);
        expected.extend_from_slice(b"app\0");
        expected.extend_from_slice(&[45, 0]);
        expected.extend_from_slice(b"mysql_native_password\0");
        expected.push(0);
        assert_eq!(&payload[..], &expected[..]);
    }
}

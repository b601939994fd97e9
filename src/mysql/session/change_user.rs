//! COM_CHANGE_USER: a new login on the same client connection. The old
//! session's server connection goes back to the pool reset, the client
//! authenticates as in a first login, and the session starts over for the
//! new user and database, with a new entry in the admin console.

use bytes::BytesMut;

use super::{Ending, Session};
use crate::config::ClientSecret;
use crate::mysql::auth;
use crate::mysql::login::{self, Attempt};
use crate::mysql::state::SessionState;
use crate::mysql::wire::command::COM_CHANGE_USER;
use crate::mysql::wire::command_payload::ChangeUser;
use crate::mysql::wire::errors;
use crate::mysql::wire::flags::capability;
use crate::mysql::wire::handshake::{AuthSwitchRequest, CACHING_SHA2_PASSWORD, NATIVE_PASSWORD};
use crate::mysql::wire::response::ErrPacket;

impl Session {
    /// COM_CHANGE_USER: a new login on the same connection. The old
    /// session's server connection is cleaned and returned first.
    pub(super) async fn change_user(&mut self, reply: u8, payload: &[u8]) -> Result<(), Ending> {
        let Some(request) = ChangeUser::decode(payload, self.client.capabilities) else {
            return self.malformed(reply, COM_CHANGE_USER).await;
        };
        self.return_server_after_reset().await;
        let config = self.service.config.load_full();
        let user_config = config.users.get(&request.user);
        let secret = user_config.and_then(|user| user.secret.as_ref());
        let plugin = match (secret, request.plugin.as_deref()) {
            (Some(ClientSecret::MysqlNative(_)), _) => NATIVE_PASSWORD,
            (_, Some(CACHING_SHA2_PASSWORD)) => CACHING_SHA2_PASSWORD,
            (_, Some(NATIVE_PASSWORD)) => NATIVE_PASSWORD,
            _ => config.general.mysql_auth_plugin.name(),
        };
        let nonce = auth::new_scramble();
        let mut switch = BytesMut::new();
        AuthSwitchRequest {
            plugin: plugin.to_owned(),
            data: nonce.to_vec(),
        }
        .encode(&mut switch);
        self.io
            .send(reply, &switch)
            .await
            .map_err(|_| Ending::ClientGone)?;
        let (header, response) = self
            .io
            .read_packet()
            .await
            .map_err(|_| Ending::ClientGone)?;
        let seq = header.seq.wrapping_add(1);
        if user_config.is_none() {
            let denied = ErrPacket::new(
                errors::ACCESS_DENIED,
                login::access_denied(&request.user, &self.peer.host, !response.is_empty()),
            );
            self.send_err_packet(seq, &denied).await?;
            return Err(Ending::ChangeUserFailed);
        }
        let attempt = Attempt {
            user: &request.user,
            secret,
            plugin,
            response: &response,
            nonce: &nonce,
            seq,
            peer_host: &self.peer.host,
            secure_transport: self.peer.secure_transport,
        };
        let seq = match login::authenticate(&mut self.io, &self.service, &config, attempt).await {
            Ok(seq) => seq,
            Err((error, seq)) => {
                if let login::LoginError::Refused(packet) = error {
                    self.send_err_packet(seq, &packet).await?;
                }
                return Err(Ending::ChangeUserFailed);
            }
        };
        let database =
            match login::choose_database(&config, request.database.as_deref(), &request.user) {
                Ok(database) => database,
                Err(login::LoginError::Refused(packet)) => {
                    self.send_err_packet(seq, &packet).await?;
                    return Err(Ending::ClientGone);
                }
                Err(_) => return Err(Ending::ClientGone),
            };
        let Some(db) = config.databases.get(&database) else {
            return Err(Ending::ClientGone);
        };
        self.settings = db.pool.clone();
        self.pool_key = (database.clone(), request.user.clone(), self.pool_key.2);
        self.initial = SessionState::baseline(Some(db.dbname.clone()));
        self.initial.multi_statements =
            self.client.capabilities & capability::MULTI_STATEMENTS != 0;
        if let Some(charset) = request.charset {
            self.client.charset = charset;
        }
        self.charset_known = self.client.charset == 45;
        self.client.user = request.user.clone();
        self.client.database = database;
        self.state = self.initial.clone();
        self.forget_session_state();
        // A new login: a new entry in the admin console's registry, whose
        // kill switch the session watches from now on.
        self.live = self.service.registry.logged_in(
            crate::metrics::PROTOCOL_MYSQL,
            &self.client.database,
            &self.client.user,
            &self.client.program_name,
            &self.io.stream,
        );
        self.handle.killed = self.live.kill_switch();
        self.service
            .clients
            .relogged(self.id, &request.user, self.handle.killed.clone());
        self.send_ok(seq).await
    }
}

//! A hand-made MySQL protocol client for what mysql_async cannot send or
//! show: COM_INIT_DB, COM_STATISTICS, COM_FIELD_LIST, command bytes no
//! client sends, a close without COM_QUIT, and which caching_sha2_password
//! path (fast or full authentication) a login took. It offers no
//! DEPRECATE_EOF, so result sets end with classic EOF packets.

use std::time::Duration;

use mysql_common::auth::plugins::caching_sha2_password::scramble_sha256;
use mysql_common::auth::plugins::mysql_native_password::scramble_native;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::credentials::{APP_DB, MySqlProxyUser};

/// Bound on any one packet from the proxy.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

const LONG_PASSWORD: u32 = 1;
const CONNECT_WITH_DB: u32 = 8;
const PROTOCOL_41: u32 = 0x200;
const TRANSACTIONS: u32 = 0x2000;
const SECURE_CONNECTION: u32 = 0x8000;
const MULTI_RESULTS: u32 = 0x2_0000;
const PLUGIN_AUTH: u32 = 0x8_0000;
/// utf8mb4_general_ci, the collation logins ask for unless told otherwise.
const DEFAULT_COLLATION: u8 = 45;

/// AuthMoreData, and what follows it in caching_sha2_password.
const AUTH_MORE_DATA: u8 = 0x01;
const REQUEST_PUBLIC_KEY: u8 = 0x02;
const FAST_AUTH_OK: u8 = 0x03;
const PERFORM_FULL_AUTH: u8 = 0x04;

pub const OK: u8 = 0x00;
pub const EOF: u8 = 0xFE;
pub const ERR: u8 = 0xFF;

/// A logged-in connection to a MySQL listener.
pub struct RawMySql {
    stream: TcpStream,
}

/// How a caching_sha2_password login went.
pub struct Sha2Login {
    /// The server asked for full authentication (the RSA key exchange)
    /// rather than accepting the scramble on the fast path.
    pub full_auth: bool,
    /// The connection, or the error code the login ended with.
    pub outcome: Result<RawMySql, u16>,
}

impl RawMySql {
    /// Logs in to `127.0.0.1:port` as `user` with database `app` and
    /// mysql_native_password; panics unless the login ends with OK.
    pub async fn login(port: u16, user: MySqlProxyUser) -> RawMySql {
        RawMySql::login_with_collation(port, user, DEFAULT_COLLATION).await
    }

    /// [`RawMySql::login`] asking for the collation with id `collation` in
    /// the handshake (which sets the connection's character set).
    pub async fn login_with_collation(port: u16, user: MySqlProxyUser, collation: u8) -> RawMySql {
        let (mut connection, nonce) = RawMySql::greeted(port).await;
        let proof = scramble_native(&nonce, user.password.as_bytes()).expect("a password");
        connection
            .send_handshake_response(user.name, &proof, "mysql_native_password", collation)
            .await;
        let (_, reply) = connection.read_packet().await;
        assert_eq!(
            reply.first(),
            Some(&OK),
            "login reply: {}",
            describe(&reply)
        );
        connection
    }

    /// Logs in to `127.0.0.1:port` as `user` with `password` and
    /// caching_sha2_password over TCP: the fast path if the server accepts
    /// the scramble, otherwise full authentication with the server's RSA
    /// public key.
    pub async fn login_caching_sha2(port: u16, user: &str, password: &str) -> Sha2Login {
        let (mut connection, nonce) = RawMySql::greeted(port).await;
        let nonce: [u8; 20] = nonce.try_into().expect("a 20-byte scramble");
        let proof = scramble_sha256(&nonce, password.as_bytes()).expect("a password");
        connection
            .send_handshake_response(user, &proof, "caching_sha2_password", DEFAULT_COLLATION)
            .await;
        let (seq, first) = connection.read_packet().await;
        let full_auth = first == [AUTH_MORE_DATA, PERFORM_FULL_AUTH];
        let reply = if full_auth {
            connection
                .write_packet(seq + 1, &[REQUEST_PUBLIC_KEY])
                .await;
            let (key_seq, key) = connection.read_packet().await;
            assert_eq!(key.first(), Some(&AUTH_MORE_DATA), "{}", describe(&key));
            let mut clear = password.as_bytes().to_vec();
            clear.push(0);
            for (i, byte) in clear.iter_mut().enumerate() {
                *byte ^= nonce[i % nonce.len()];
            }
            let encrypted = mysql_common::crypto::encrypt(&clear, &key[1..])
                .unwrap_or_else(|e| panic!("encrypting with the server's public key: {e}"));
            connection.write_packet(key_seq + 1, &encrypted).await;
            connection.read_packet().await.1
        } else if first == [AUTH_MORE_DATA, FAST_AUTH_OK] {
            connection.read_packet().await.1
        } else {
            first
        };
        let outcome = match reply.first() {
            Some(&OK) => Ok(connection),
            Some(&ERR) => Err(err_code(&reply)),
            _ => panic!(
                "caching_sha2_password login: unexpected {}",
                describe(&reply)
            ),
        };
        Sha2Login { full_auth, outcome }
    }

    /// Connects, reads the greeting, sends an SSLRequest (as a client
    /// wanting TLS does before its handshake response) and returns the
    /// reply.
    pub async fn request_tls(port: u16) -> Vec<u8> {
        const SSL: u32 = 0x800;
        let (mut connection, _) = RawMySql::greeted(port).await;
        let mut request = (PROTOCOL_41 | SECURE_CONNECTION | SSL)
            .to_le_bytes()
            .to_vec();
        request.extend_from_slice(&(16u32 << 20).to_le_bytes());
        request.push(DEFAULT_COLLATION);
        request.extend_from_slice(&[0; 23]);
        connection.write_packet(1, &request).await;
        connection.read_packet().await.1
    }

    /// Connects and reads the greeting without answering it; returns the
    /// connection and the greeting.
    pub async fn greeting_only(port: u16) -> (RawMySql, Vec<u8>) {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("connecting to 127.0.0.1:{port}: {e}"));
        let mut connection = RawMySql { stream };
        let (_, greeting) = connection.read_packet().await;
        (connection, greeting)
    }

    /// Connects and reads the greeting; returns its 20-byte scramble.
    async fn greeted(port: u16) -> (RawMySql, Vec<u8>) {
        let (connection, greeting) = RawMySql::greeting_only(port).await;
        let nonce = greeting_nonce(&greeting);
        (connection, nonce)
    }

    async fn send_handshake_response(
        &mut self,
        user: &str,
        proof: &[u8],
        plugin: &str,
        collation: u8,
    ) {
        let mut response = Vec::new();
        let capabilities = LONG_PASSWORD
            | CONNECT_WITH_DB
            | PROTOCOL_41
            | TRANSACTIONS
            | SECURE_CONNECTION
            | MULTI_RESULTS
            | PLUGIN_AUTH;
        response.extend_from_slice(&capabilities.to_le_bytes());
        response.extend_from_slice(&(16u32 << 20).to_le_bytes());
        response.push(collation);
        response.extend_from_slice(&[0; 23]);
        push_cstr(&mut response, user);
        response.push(proof.len() as u8);
        response.extend_from_slice(proof);
        push_cstr(&mut response, APP_DB);
        push_cstr(&mut response, plugin);
        self.write_packet(1, &response).await;
    }

    /// Sends one command packet (sequence id 0).
    pub async fn send_command(&mut self, payload: &[u8]) {
        self.write_packet(0, payload).await;
    }

    /// Sends a command and returns its one-packet reply.
    pub async fn command(&mut self, payload: &[u8]) -> Vec<u8> {
        self.send_command(payload).await;
        self.read_packet().await.1
    }

    /// Sends a command and returns the packets of its reply up to and
    /// including the first EOF or ERR.
    pub async fn command_until_eof(&mut self, payload: &[u8]) -> Vec<Vec<u8>> {
        self.send_command(payload).await;
        let mut packets = Vec::new();
        loop {
            let (_, packet) = self.read_packet().await;
            let last = packet.first() == Some(&ERR) || is_eof(&packet);
            packets.push(packet);
            if last {
                return packets;
            }
        }
    }

    /// COM_STMT_PREPARE: returns the statement id, after reading the
    /// parameter and column definitions (each group ends with EOF).
    pub async fn prepare(&mut self, sql: &str) -> u32 {
        let mut payload = vec![0x16];
        payload.extend_from_slice(sql.as_bytes());
        let reply = self.command(&payload).await;
        assert_eq!(reply[0], OK, "{sql}: {}", describe(&reply));
        let id = u32::from_le_bytes([reply[1], reply[2], reply[3], reply[4]]);
        let columns = u16::from_le_bytes([reply[5], reply[6]]);
        let params = u16::from_le_bytes([reply[7], reply[8]]);
        for group in [params, columns] {
            if group > 0 {
                for _ in 0..group {
                    self.read_packet().await;
                }
                let (_, eof) = self.read_packet().await;
                assert!(is_eof(&eof), "{sql}: {}", describe(&eof));
            }
        }
        id
    }

    /// Sends `sql` as COM_QUERY and returns its reply's first packet,
    /// which ends the reply for statements that return no rows.
    pub async fn query_no_rows(&mut self, sql: &str) -> Vec<u8> {
        let mut payload = vec![0x03];
        payload.extend_from_slice(sql.as_bytes());
        self.command(&payload).await
    }

    /// Sends `sql`, which selects one value, and returns it as text; panics
    /// unless a result set with a row comes.
    pub async fn scalar(&mut self, sql: &str) -> String {
        let mut payload = vec![0x03];
        payload.extend_from_slice(sql.as_bytes());
        // Column count, column definition, EOF.
        let head = self.command_until_eof(&payload).await;
        assert_ne!(head[0].first(), Some(&ERR), "{sql}: {}", describe(&head[0]));
        let (_, row) = self.read_packet().await;
        let (_, eof) = self.read_packet().await;
        assert!(is_eof(&eof), "{sql}: more than one row");
        let len = usize::from(row[0]);
        String::from_utf8_lossy(&row[1..1 + len]).into_owned()
    }

    /// Reads one packet: (sequence id, payload). Panics after 20 s or if
    /// the connection closes.
    pub async fn read_packet(&mut self) -> (u8, Vec<u8>) {
        self.try_read_packet()
            .await
            .unwrap_or_else(|e| panic!("reading a MySQL packet: {e}"))
    }

    /// Reads one packet, or says why none came (the connection closed).
    /// Panics after 20 s.
    pub async fn try_read_packet(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        tokio::time::timeout(READ_TIMEOUT, async {
            let mut header = [0u8; 4];
            self.stream.read_exact(&mut header).await?;
            let len =
                usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).await?;
            Ok((header[3], payload))
        })
        .await
        .unwrap_or_else(|_| panic!("no MySQL packet within {READ_TIMEOUT:?}"))
    }

    async fn write_packet(&mut self, seq: u8, payload: &[u8]) {
        let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        packet.push(seq);
        packet.extend_from_slice(payload);
        self.stream
            .write_all(&packet)
            .await
            .unwrap_or_else(|e| panic!("writing a MySQL packet: {e}"));
    }
}

/// An EOF packet (a 0xFE packet too short to be a row).
pub fn is_eof(packet: &[u8]) -> bool {
    packet.first() == Some(&EOF) && packet.len() < 9
}

/// The error code of an ERR packet; panics, describing it, on any other.
pub fn err_code(packet: &[u8]) -> u16 {
    assert_eq!(packet.first(), Some(&ERR), "not ERR: {}", describe(packet));
    u16::from_le_bytes([packet[1], packet[2]])
}

/// The message of an ERR packet with `code`; panics, describing the
/// packet, on any other.
pub fn err_message(packet: &[u8], code: u16) -> String {
    assert_eq!(err_code(packet), code, "{}", describe(packet));
    String::from_utf8_lossy(&packet[9..]).into_owned()
}

/// A packet for assertion messages: ERR packets as code and message.
pub fn describe(packet: &[u8]) -> String {
    if packet.first() == Some(&ERR) && packet.len() > 9 {
        format!(
            "ERR {} {}",
            u16::from_le_bytes([packet[1], packet[2]]),
            String::from_utf8_lossy(&packet[9..])
        )
    } else {
        format!("{packet:02x?}")
    }
}

/// The 20-byte scramble of a HandshakeV10: 8 bytes after the server
/// version and connection id, 12 more after the fixed fields.
fn greeting_nonce(greeting: &[u8]) -> Vec<u8> {
    assert_eq!(
        greeting.first(),
        Some(&10),
        "not a HandshakeV10: {}",
        describe(greeting)
    );
    let version_end = 1 + greeting[1..]
        .iter()
        .position(|&b| b == 0)
        .expect("server version");
    let part1 = version_end + 1 + 4;
    let mut nonce = greeting[part1..part1 + 8].to_vec();
    // filler, capabilities, charset, status, capabilities, auth data
    // length, 10 reserved bytes.
    let part2 = part1 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
    nonce.extend_from_slice(&greeting[part2..part2 + 12]);
    nonce
}

fn push_cstr(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

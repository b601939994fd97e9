//! A PostgreSQL client that speaks the wire protocol by hand, for what
//! tokio-postgres hides or will not do: encryption requests, other protocol
//! versions, cancel keys, malformed messages, and sessions abandoned in the
//! middle of a login, a COPY or a result.
//!
//! Building and parsing messages works on bytes; [`RawConnection`] reads
//! and writes them over TCP, every read bounded unless a test says otherwise.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::time::Duration;

use postgres_protocol::authentication::md5_hash;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::credentials::{APP_DB, PgUser};

/// A backend message: type byte and body (without the length word).
pub type Message = (u8, Vec<u8>);

/// Startup-phase request codes.
pub const PROTOCOL_3_0: i32 = 196_608;
pub const CANCEL_REQUEST: i32 = 80_877_102;
pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;

/// AuthenticationRequest codes.
pub const AUTH_OK: i32 = 0;
pub const AUTH_MD5: i32 = 5;
pub const AUTH_SASL: i32 = 10;

/// How long connecting, and by default each read, may take before the
/// test fails instead of hanging.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages larger than this are taken for a framing error.
const MAX_MESSAGE_LEN: usize = 1 << 20;

/// An untagged startup-phase packet: length, request code, body.
pub fn request(code: i32, body: &[u8]) -> Vec<u8> {
    let mut packet = i32::try_from(body.len() + 8)
        .expect("small packet")
        .to_be_bytes()
        .to_vec();
    packet.extend_from_slice(&code.to_be_bytes());
    packet.extend_from_slice(body);
    packet
}

/// A StartupMessage for protocol `major.minor` with `params`.
pub fn startup_with_version(major: u16, minor: u16, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in params {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    request(i32::from(major) << 16 | i32::from(minor), &body)
}

/// A protocol 3.0 StartupMessage with `params`.
pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    startup_with_version(3, 0, params)
}

/// A protocol 3.0 StartupMessage logging `user` in to the `app` database.
pub fn app_startup(user: &str) -> Vec<u8> {
    startup(&[("user", user), ("database", APP_DB)])
}

/// A CancelRequest carrying a BackendKeyData's process id and secret key.
pub fn cancel_request(process_id: i32, secret_key: i32) -> Vec<u8> {
    let mut key = process_id.to_be_bytes().to_vec();
    key.extend_from_slice(&secret_key.to_be_bytes());
    request(CANCEL_REQUEST, &key)
}

/// A tagged message: type byte, length (counting itself), body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(
        &i32::try_from(body.len() + 4)
            .expect("small message")
            .to_be_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// A simple Query.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// Terminate: the client's goodbye.
pub fn terminate() -> Vec<u8> {
    message(b'X', &[])
}

/// The PasswordMessage answering an MD5 challenge with `salt` as `user`.
pub fn md5_password(user: PgUser, salt: [u8; 4]) -> Vec<u8> {
    let mut hash = md5_hash(user.name.as_bytes(), user.password.as_bytes(), salt).into_bytes();
    hash.push(0);
    message(b'p', &hash)
}

fn be_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes(bytes.try_into().expect("four bytes"))
}

/// The AuthenticationRequest code of an 'R' message.
pub fn auth_code(message: &Message) -> i32 {
    assert_eq!(message.0, b'R', "expected an authentication request");
    be_i32(&message.1[..4])
}

/// The salt of an AuthenticationMD5Password request.
pub fn md5_salt(message: &Message) -> [u8; 4] {
    assert_eq!(auth_code(message), AUTH_MD5, "expected an MD5 challenge");
    message.1[4..8].try_into().expect("a four-byte salt")
}

/// An ErrorResponse's fields by type byte ('S', 'C' for the SQLSTATE, 'M', ...).
pub fn error_fields(message: &Message) -> BTreeMap<char, String> {
    assert_eq!(message.0, b'E', "expected an ErrorResponse");
    message
        .1
        .split(|&byte| byte == 0)
        .filter(|field| !field.is_empty())
        .map(|field| {
            (
                field[0] as char,
                String::from_utf8_lossy(&field[1..]).into_owned(),
            )
        })
        .collect()
}

/// The columns of a DataRow in text format (NULL as "").
pub fn data_row(message: &Message) -> Vec<String> {
    assert_eq!(message.0, b'D', "expected a DataRow");
    let body = &message.1;
    let columns = u16::from_be_bytes([body[0], body[1]]);
    let mut rest = &body[2..];
    (0..columns)
        .map(|_| {
            let length = be_i32(&rest[..4]);
            rest = &rest[4..];
            let Ok(length) = usize::try_from(length) else {
                return String::new();
            };
            let value = String::from_utf8(rest[..length].to_vec()).expect("UTF-8 text");
            rest = &rest[length..];
            value
        })
        .collect()
}

/// A TCP connection to churnstile carrying hand-made messages.
pub struct RawConnection {
    stream: TcpStream,
    /// How long each read may wait; `None` waits as long as it takes.
    read_limit: Option<Duration>,
}

impl RawConnection {
    /// Connects to churnstile on 127.0.0.1:`port`; reads wait up to
    /// [`READ_TIMEOUT`].
    pub async fn connect(port: u16) -> RawConnection {
        let stream = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .expect("connecting to churnstile timed out")
            .expect("connecting to churnstile");
        RawConnection {
            stream,
            read_limit: Some(READ_TIMEOUT),
        }
    }

    /// A connection over `stream`, e.g. one opened from another network
    /// namespace; reads wait up to [`READ_TIMEOUT`].
    pub fn over(stream: TcpStream) -> RawConnection {
        RawConnection {
            stream,
            read_limit: Some(READ_TIMEOUT),
        }
    }

    /// Reads wait up to `limit` from now on.
    pub fn with_read_limit(mut self, limit: Duration) -> RawConnection {
        self.read_limit = Some(limit);
        self
    }

    /// Reads wait as long as it takes, e.g. for a place in a pool's queue.
    pub fn without_read_limit(mut self) -> RawConnection {
        self.read_limit = None;
        self
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("writing to churnstile");
    }

    /// Streams `total` bytes of filler in 1 MiB writes, as a client sending
    /// a huge message body would; returns how many were written before the
    /// peer stopped taking them (closed, or took none for 5 s).
    pub async fn stream_filler(&mut self, total: usize) -> usize {
        let chunk = vec![b'x'; 1 << 20];
        let mut written = 0;
        while written < total {
            let len = chunk.len().min(total - written);
            let write = self.stream.write_all(&chunk[..len]);
            match tokio::time::timeout(Duration::from_secs(5), write).await {
                Ok(Ok(())) => written += len,
                Ok(Err(_)) | Err(_) => break,
            }
        }
        written
    }

    /// One byte, as churnstile answers an SSLRequest or GSSENCRequest.
    pub async fn read_byte(&mut self) -> u8 {
        let mut byte = [0u8];
        within(self.read_limit, self.stream.read_exact(&mut byte))
            .await
            .expect("reading one byte from churnstile");
        byte[0]
    }

    /// The next whole message, or `None` if the peer closed the connection.
    pub async fn read_message(&mut self) -> Option<Message> {
        within(self.read_limit, read_message_from(&mut self.stream)).await
    }

    /// The next whole message; panics if the peer closed the connection.
    pub async fn expect_message(&mut self) -> Message {
        self.read_message()
            .await
            .expect("churnstile closed the connection")
    }

    /// Messages up to and including ReadyForQuery or an ErrorResponse.
    pub async fn read_until_ready_or_error(&mut self) -> Vec<Message> {
        let mut messages = Vec::new();
        for _ in 0..1_000 {
            let Some(message) = self.read_message().await else {
                panic!("churnstile closed the connection after {messages:?}");
            };
            let last = matches!(message.0, b'Z' | b'E');
            messages.push(message);
            if last {
                return messages;
            }
        }
        panic!("no ReadyForQuery or ErrorResponse in 1000 messages");
    }

    /// Reads up to ReadyForQuery; panics on an ErrorResponse.
    pub async fn wait_ready(&mut self) {
        loop {
            match self.expect_message().await {
                (b'Z', _) => return,
                error @ (b'E', _) => panic!("error from churnstile: {:?}", error_fields(&error)),
                _ => {}
            }
        }
    }

    /// Answers the login that follows a StartupMessage for `user`: the MD5
    /// challenge, if churnstile sends one. Returns once AuthenticationOk has
    /// arrived, before churnstile looks for a server connection.
    pub async fn authenticate_md5(&mut self, user: PgUser) {
        loop {
            let request = self.expect_message().await;
            match auth_code(&request) {
                AUTH_OK => return,
                AUTH_MD5 => self.send(&md5_password(user, md5_salt(&request))).await,
                other => panic!("unexpected authentication request {other}"),
            }
        }
    }

    /// True once the peer has closed the connection within `limit`
    /// (anything it sends first is discarded).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut sink = [0u8; 4096];
        tokio::time::timeout(limit, async {
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

/// Awaits `read`, failing the test if it takes longer than `limit`.
async fn within<T>(limit: Option<Duration>, read: impl Future<Output = T>) -> T {
    match limit {
        Some(limit) => tokio::time::timeout(limit, read)
            .await
            .expect("churnstile sent nothing within the time limit"),
        None => read.await,
    }
}

/// The next whole message from any byte stream (a TLS one too), or `None`
/// if the peer closed it.
pub async fn read_message_from(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Option<Message> {
    let mut header = [0u8; 5];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            return None;
        }
        Err(e) => panic!("reading from churnstile: {e}"),
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    assert!(
        (4..MAX_MESSAGE_LEN).contains(&len),
        "churnstile sent message '{}' with length {len}",
        header[0] as char
    );
    let mut body = vec![0u8; len - 4];
    stream
        .read_exact(&mut body)
        .await
        .expect("reading a message body from churnstile");
    Some((header[0], body))
}

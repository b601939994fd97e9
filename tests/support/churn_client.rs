//! Raw PostgreSQL clients for churn tests: connect over TCP or a Unix
//! socket, log in (trust or md5) or stop part-way, and leave politely or
//! abruptly — thousands of times, cheaply, without a driver.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

const PROTOCOL_3_0: i32 = 196_608;
/// No test server sends more in one message; anything bigger is a bug.
const MAX_MESSAGE: usize = 1 << 20;

/// Where a raw client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    /// The Unix socket file itself, e.g. `DIR/.s.PGSQL.6432`.
    Unix(PathBuf),
}

/// How a login ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// ReadyForQuery: the session is usable.
    Ready,
    /// A FATAL ErrorResponse with this SQLSTATE.
    Refused(String),
    /// The server closed the connection without an answer.
    Closed,
}

trait Socket: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Socket for T {}

/// One raw connection.
pub struct RawClient {
    socket: Box<dyn Socket>,
}

impl RawClient {
    pub async fn connect(address: &Address) -> io::Result<RawClient> {
        let socket: Box<dyn Socket> = match address {
            Address::Tcp(addr) => Box::new(TcpStream::connect(addr).await?),
            Address::Unix(path) => Box::new(UnixStream::connect(path).await?),
        };
        Ok(RawClient { socket })
    }

    /// Sends the startup packet, answers a cleartext or md5 password request
    /// and reads up to ReadyForQuery or an ErrorResponse.
    pub async fn log_in(
        &mut self,
        user: &str,
        password: &str,
        database: &str,
    ) -> io::Result<Login> {
        self.socket
            .write_all(&startup_packet(user, database))
            .await?;
        loop {
            let Some((tag, body)) = self.read_message().await? else {
                return Ok(Login::Closed);
            };
            match tag {
                b'R' => match int32(&body, 0) {
                    0 => {}
                    3 => self.send_password(password).await?,
                    5 => {
                        let salt = body.get(4..8).ok_or_else(|| malformed("md5 salt"))?;
                        self.send_password(&md5_password(user, password, salt))
                            .await?;
                    }
                    other => return Err(malformed(&format!("authentication request {other}"))),
                },
                b'E' => return Ok(Login::Refused(sqlstate(&body))),
                b'Z' => return Ok(Login::Ready),
                // ParameterStatus, BackendKeyData, NoticeResponse.
                _ => {}
            }
        }
    }

    /// Sends the first bytes of a startup packet and no more.
    pub async fn send_partial_startup(&mut self) -> io::Result<()> {
        let packet = startup_packet("nobody", "nowhere");
        self.socket.write_all(&packet[..6]).await
    }

    /// Sends Terminate and waits for the server to close the connection.
    pub async fn terminate(mut self) -> io::Result<()> {
        self.socket.write_all(&[b'X', 0, 0, 0, 4]).await?;
        self.wait_closed().await
    }

    /// Sends Terminate; if the connection was already gone (the server ended
    /// the session first), returns the SQLSTATE of the FATAL it was sent.
    /// The FATAL may arrive before or after the Terminate is written, and
    /// the connection may then end with a reset: every message up to the
    /// close is read, so the FATAL is found either way.
    pub async fn terminate_or_fatal(mut self) -> Result<(), String> {
        let sent = self.socket.write_all(&[b'X', 0, 0, 0, 4]).await;
        let mut fatal = None;
        let ended = loop {
            match self.read_message().await {
                Ok(Some((b'E', body))) => fatal = Some(sqlstate(&body)),
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        match (fatal, ended) {
            (Some(code), _) => Err(code),
            (None, Ok(())) if sent.is_ok() => Ok(()),
            (None, ended) => Err(format!("terminate failed: {ended:?} after {sent:?}")),
        }
    }

    /// Reads (and drops) whatever comes until the server closes.
    pub async fn wait_closed(&mut self) -> io::Result<()> {
        let mut sink = [0u8; 1024];
        while self.socket.read(&mut sink).await? > 0 {}
        Ok(())
    }

    async fn send_password(&mut self, password: &str) -> io::Result<()> {
        let mut message = vec![b'p'];
        message.extend_from_slice(&len32(4 + password.len() + 1));
        message.extend_from_slice(password.as_bytes());
        message.push(0);
        self.socket.write_all(&message).await
    }

    /// `None` at end of stream.
    async fn read_message(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        let mut header = [0u8; 5];
        match self.socket.read_exact(&mut header).await {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
            Err(error) => return Err(error),
        }
        let len = usize::try_from(int32(&header, 1)).unwrap_or(0);
        if !(4..=MAX_MESSAGE).contains(&len) {
            return Err(malformed(&format!("message length {len}")));
        }
        let mut body = vec![0u8; len - 4];
        self.socket.read_exact(&mut body).await?;
        Ok(Some((header[0], body)))
    }
}

fn startup_packet(user: &str, database: &str) -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (key, value) in [("user", user), ("database", database)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = len32(4 + body.len()).to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// `md5` + hex(md5(hex(md5(password + user)) + salt)), as libpq sends it.
fn md5_password(user: &str, password: &str, salt: &[u8]) -> String {
    let inner = hex(&Md5::digest(format!("{password}{user}").as_bytes()));
    let mut outer = Md5::new();
    outer.update(inner.as_bytes());
    outer.update(salt);
    format!("md5{}", hex(&outer.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The `C` field of an ErrorResponse body.
fn sqlstate(body: &[u8]) -> String {
    body.split(|&byte| byte == 0)
        .find_map(|field| field.strip_prefix(b"C"))
        .map(|code| String::from_utf8_lossy(code).into_owned())
        .unwrap_or_default()
}

fn int32(bytes: &[u8], at: usize) -> i32 {
    bytes
        .get(at..at + 4)
        .map_or(-1, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn len32(len: usize) -> [u8; 4] {
    i32::try_from(len)
        .expect("test messages are small")
        .to_be_bytes()
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unexpected {what}"))
}

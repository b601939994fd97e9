//! One byte-stream type for both legs of a proxied connection: a client or
//! an upstream server reached over TCP or a Unix socket, and over TCP
//! possibly encrypted with TLS. TLS is started on a plaintext stream by
//! [`Stream::accept_tls`] (a client's leg) or [`Stream::connect_tls`] (a
//! server's), so both protocols negotiate it the same way. Unix sockets
//! never carry TLS: neither PostgreSQL nor MySQL clients encrypt them.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::TcpSettings;

/// A connected TCP or Unix stream.
#[derive(Debug)]
pub enum Stream {
    Tcp(Tcp),
    Unix(UnixStream),
    /// What is left after a TLS handshake in place failed or was abandoned:
    /// reads see end of stream, writes fail.
    Closed,
}

/// A TCP connection, in plaintext or with TLS on it.
#[derive(Debug)]
pub enum Tcp {
    Plain(TcpStream),
    /// churnstile's end of a client's TLS session.
    TlsFromClient(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// churnstile's TLS session with an upstream server.
    TlsToServer(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Why TLS could not be started on a stream.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS is not available over a Unix socket")]
    UnixSocket,
    #[error("TLS is already running on this connection")]
    AlreadyTls,
    #[error("TLS handshake failed: {0}")]
    Failed(io::Error),
}

impl Stream {
    /// Wraps a TCP stream churnstile opened, after setting its options
    /// ([`set_tcp_options`]).
    pub fn tcp(stream: TcpStream) -> io::Result<Self> {
        set_tcp_options(socket2::SockRef::from(&stream))?;
        Ok(Stream::Tcp(Tcp::Plain(stream)))
    }

    /// Wraps a TCP stream accepted from a listener that [`set_tcp_options`]
    /// configured: Linux copies a listener's TCP_NODELAY and keepalive
    /// settings to every connection it accepts, which saves five system
    /// calls per client.
    pub fn accepted_tcp(stream: TcpStream) -> Self {
        Stream::Tcp(Tcp::Plain(stream))
    }

    /// Reads whatever is available without waiting: `Ok(None)` when nothing
    /// is, `Ok(Some(0))` at end of stream. Over TLS, only application data
    /// counts: a session ticket or key update arriving is not "something".
    pub fn try_read_now(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let result = match self {
            Stream::Tcp(Tcp::Plain(s)) => s.try_read(buf),
            Stream::Unix(s) => s.try_read(buf),
            Stream::Closed => Ok(0),
            tls => return poll_now(|cx| read_into(Pin::new(tls), cx, buf)),
        };
        match result {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes what can be written without waiting (a goodbye message before
    /// the connection is dropped): the number of bytes taken, 0 when none
    /// could be.
    pub fn try_write_now(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = match self {
            Stream::Tcp(Tcp::Plain(s)) => s.try_write(buf),
            Stream::Unix(s) => s.try_write(buf),
            Stream::Closed => Ok(0),
            tls => {
                let written = poll_now(|cx| Pin::new(&mut *tls).poll_write(cx, buf))?;
                poll_now(|cx| Pin::new(&mut *tls).poll_flush(cx))?;
                return Ok(written.unwrap_or(0));
            }
        };
        match written {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }

    /// Does the server side of a TLS handshake with a client. `already_read`
    /// is the start of the client's hello when the protocol read it before
    /// telling TLS from plaintext (PostgreSQL 17's direct TLS).
    pub async fn accept_tls(
        self,
        config: Arc<ServerConfig>,
        already_read: &[u8],
    ) -> Result<Stream, HandshakeError> {
        let tcp = self.into_plain_tcp()?;
        let mut rest = already_read;
        let accept = TlsAcceptor::from(config).accept_with(tcp, |session| {
            while !rest.is_empty() && matches!(session.read_tls(&mut rest), Ok(n) if n > 0) {}
            // An error is kept by the session and reported by the handshake.
            let _ = session.process_new_packets();
        });
        match accept.await {
            Ok(tls) => Ok(Stream::Tcp(Tcp::TlsFromClient(Box::new(tls)))),
            Err(error) => Err(HandshakeError::Failed(error)),
        }
    }

    /// Does the client side of a TLS handshake with an upstream server
    /// known as `server_name` (what `verify-full` checks its certificate
    /// against).
    pub async fn connect_tls(
        self,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Result<Stream, HandshakeError> {
        let tcp = self.into_plain_tcp()?;
        match TlsConnector::from(config).connect(server_name, tcp).await {
            Ok(tls) => Ok(Stream::Tcp(Tcp::TlsToServer(Box::new(tls)))),
            Err(error) => Err(HandshakeError::Failed(error)),
        }
    }

    /// [`Stream::accept_tls`] in place, for a protocol that holds the
    /// stream by reference; after a failure the stream is [`Stream::Closed`].
    pub async fn start_tls_server(
        &mut self,
        config: Arc<ServerConfig>,
        already_read: &[u8],
    ) -> Result<(), HandshakeError> {
        let plain = std::mem::replace(self, Stream::Closed);
        *self = plain.accept_tls(config, already_read).await?;
        Ok(())
    }

    /// [`Stream::connect_tls`] in place; after a failure the stream is
    /// [`Stream::Closed`].
    pub async fn start_tls_client(
        &mut self,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Result<(), HandshakeError> {
        let plain = std::mem::replace(self, Stream::Closed);
        *self = plain.connect_tls(config, server_name).await?;
        Ok(())
    }

    /// Whether TLS could start on this stream: plaintext TCP.
    pub fn can_start_tls(&self) -> bool {
        matches!(self, Stream::Tcp(Tcp::Plain(_)))
    }

    fn into_plain_tcp(self) -> Result<TcpStream, HandshakeError> {
        match self {
            Stream::Tcp(Tcp::Plain(tcp)) => Ok(tcp),
            Stream::Tcp(_) => Err(HandshakeError::AlreadyTls),
            Stream::Unix(_) | Stream::Closed => Err(HandshakeError::UnixSocket),
        }
    }

    /// The TLS version in use as PgBouncer's `tls` column shows it
    /// (`TLSv1.3`); `None` for plaintext.
    pub fn tls_version(&self) -> Option<&'static str> {
        let version = match self {
            Stream::Tcp(Tcp::TlsFromClient(tls)) => tls.get_ref().1.protocol_version(),
            Stream::Tcp(Tcp::TlsToServer(tls)) => tls.get_ref().1.protocol_version(),
            _ => None,
        };
        version.map(|version| match version {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        })
    }

    /// The application protocol the TLS handshake agreed on (ALPN).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            Stream::Tcp(Tcp::TlsFromClient(tls)) => tls.get_ref().1.alpn_protocol(),
            Stream::Tcp(Tcp::TlsToServer(tls)) => tls.get_ref().1.alpn_protocol(),
            _ => None,
        }
    }
}

impl Tcp {
    fn socket(&self) -> &TcpStream {
        match self {
            Tcp::Plain(s) => s,
            Tcp::TlsFromClient(tls) => tls.get_ref().0,
            Tcp::TlsToServer(tls) => tls.get_ref().0,
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket().peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket().local_addr()
    }
}

/// One poll with a waker that wakes nothing: `Ok(None)` when the
/// operation would have to wait. A later poll from a task registers that
/// task's waker again, so nothing is lost.
fn poll_now<T>(
    poll: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<T>>,
) -> io::Result<Option<T>> {
    match poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result.map(Some),
        Poll::Pending => Ok(None),
    }
}

fn read_into(
    stream: Pin<&mut Stream>,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    let mut buf = ReadBuf::new(buf);
    stream
        .poll_read(cx, &mut buf)
        .map_ok(|()| buf.filled().len())
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(Tcp::Plain(s)) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(Tcp::TlsFromClient(s)) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(Tcp::TlsToServer(s)) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(Tcp::Plain(s)) => Pin::new(s).poll_write(cx, buf),
            Stream::Tcp(Tcp::TlsFromClient(s)) => Pin::new(s).poll_write(cx, buf),
            Stream::Tcp(Tcp::TlsToServer(s)) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(Tcp::Plain(s)) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(Tcp::TlsFromClient(s)) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(Tcp::TlsToServer(s)) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(Tcp::Plain(s)) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(Tcp::TlsFromClient(s)) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(Tcp::TlsToServer(s)) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// The `[general]` TCP settings in force; the core sets them from each
/// configuration it loads, before the listeners are bound.
static TCP_SETTINGS: std::sync::RwLock<TcpSettings> = std::sync::RwLock::new(TcpSettings::DEFAULT);

/// Puts `settings` in force for TCP sockets set up from now on.
pub fn use_tcp_settings(settings: TcpSettings) {
    *TCP_SETTINGS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = settings;
}

/// TCP_NODELAY (small protocol messages must not wait for Nagle) and the
/// configured keepalive and user timeout (dead peers are noticed) on a
/// connection, or on a listener whose accepted connections then inherit them.
pub fn set_tcp_options(socket: socket2::SockRef<'_>) -> io::Result<()> {
    socket.set_tcp_nodelay(true)?;
    let tcp = *TCP_SETTINGS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(timeout) = tcp.user_timeout {
        socket.set_tcp_user_timeout(Some(timeout))?;
    }
    if !tcp.keepalive {
        return socket.set_keepalive(false);
    }
    let mut keepalive = socket2::TcpKeepalive::new();
    if let Some(idle) = tcp.keepidle {
        keepalive = keepalive.with_time(idle);
    }
    if let Some(interval) = tcp.keepintvl {
        keepalive = keepalive.with_interval(interval);
    }
    if let Some(count) = tcp.keepcnt {
        keepalive = keepalive.with_retries(count);
    }
    socket.set_tcp_keepalive(&keepalive)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sockets_take_the_configured_keepalive_and_user_timeout() {
        use_tcp_settings(TcpSettings {
            keepalive: true,
            keepidle: Some(Duration::from_secs(7)),
            keepintvl: Some(Duration::from_secs(3)),
            keepcnt: Some(4),
            user_timeout: Some(Duration::from_secs(9)),
        });
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None);
        let socket = socket.unwrap();
        let applied = set_tcp_options(socket2::SockRef::from(&socket));
        use_tcp_settings(TcpSettings::DEFAULT);
        applied.unwrap();
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(3)
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 4);
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(9))
        );
    }
}

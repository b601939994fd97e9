//! One byte-stream type for both legs of a proxied connection: a client or an
//! upstream server reached over TCP or a Unix socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A connected TCP or Unix stream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Wraps a TCP stream churnstile opened, after setting its options
    /// ([`set_tcp_options`]).
    pub fn tcp(stream: TcpStream) -> io::Result<Self> {
        set_tcp_options(socket2::SockRef::from(&stream))?;
        Ok(Stream::Tcp(stream))
    }

    /// Wraps a TCP stream accepted from a listener that [`set_tcp_options`]
    /// configured: Linux copies a listener's TCP_NODELAY and keepalive
    /// settings to every connection it accepts, which saves five system
    /// calls per client.
    pub fn accepted_tcp(stream: TcpStream) -> Self {
        Stream::Tcp(stream)
    }

    /// Reads whatever is available without waiting: `Ok(None)` when nothing
    /// is, `Ok(Some(0))` at end of stream.
    pub fn try_read_now(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let result = match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Unix(s) => s.try_read(buf),
        };
        match result {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
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
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// TCP_NODELAY (small protocol messages must not wait for Nagle) and
/// keepalive (dead peers are noticed) on a connection, or on a listener
/// whose accepted connections then inherit them.
pub fn set_tcp_options(socket: socket2::SockRef<'_>) -> io::Result<()> {
    socket.set_tcp_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(60))
        .with_interval(std::time::Duration::from_secs(10))
        .with_retries(6);
    socket.set_tcp_keepalive(&keepalive)
}

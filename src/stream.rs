//! One byte-stream type for both legs of a proxied connection: a client or an
//! upstream server reached over TCP or a Unix socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::TcpSettings;

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

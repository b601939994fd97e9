//! The two ends of a TCP or Unix connection as the admin console shows them
//! (`addr`, `port`): an IP address and port, or `unix` and 0.

use std::net::SocketAddr;

use crate::stream::Stream;

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: String,
    pub port: u16,
}

impl Endpoint {
    fn unix() -> Self {
        Endpoint {
            addr: "unix".to_owned(),
            port: 0,
        }
    }

    fn tcp(addr: std::io::Result<SocketAddr>) -> Self {
        match addr {
            Ok(addr) => Endpoint {
                addr: addr.ip().to_canonical().to_string(),
                port: addr.port(),
            },
            Err(_) => Endpoint {
                addr: String::new(),
                port: 0,
            },
        }
    }

    /// The far end of `stream`.
    pub fn peer(stream: &Stream) -> Self {
        match stream {
            Stream::Tcp(tcp) => Endpoint::tcp(tcp.peer_addr()),
            Stream::Unix(_) | Stream::Closed => Endpoint::unix(),
        }
    }

    /// Churnstile's end of `stream`.
    pub fn local(stream: &Stream) -> Self {
        match stream {
            Stream::Tcp(tcp) => Endpoint::tcp(tcp.local_addr()),
            Stream::Unix(_) | Stream::Closed => Endpoint::unix(),
        }
    }
}

//! Fetching /metrics for `churnstile top` over one kept-alive HTTP/1.1
//! connection (reconnecting when it breaks), so watching churnstile adds
//! no connection churn of its own.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::BytesMut;

use crate::observe::http::{MAX_HEAD, get_request, parse_response};

/// Limit on connecting, and on each read and write.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest metrics page accepted.
const MAX_BODY: usize = 16 << 20;

/// Where the metrics are: `http://HOST:PORT/PATH`, or just `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsUrl {
    host: String,
    port: u16,
    path: String,
}

/// A `--metrics` value that is not a usable URL.
#[derive(Debug, thiserror::Error)]
#[error("{url:?} is not a URL such as http://127.0.0.1:9127/metrics: {reason}")]
pub struct UrlError {
    url: String,
    reason: &'static str,
}

impl MetricsUrl {
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let error = |reason| UrlError {
            url: url.to_owned(),
            reason,
        };
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some(_) => return Err(error("only http:// is supported")),
            None => url,
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/metrics"),
        };
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| error("it needs a port"))?;
        let port = port
            .parse()
            .map_err(|_| error("the port is not a number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(error("it needs a host"));
        }
        Ok(MetricsUrl {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for MetricsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// A metrics client holding its connection between fetches.
pub(super) struct Client {
    url: MetricsUrl,
    stream: Option<TcpStream>,
}

impl Client {
    pub(super) fn new(url: MetricsUrl) -> Self {
        Client { url, stream: None }
    }

    /// The metrics text, reusing the connection when it still works.
    pub(super) fn fetch(&mut self) -> io::Result<String> {
        if let Some(stream) = self.stream.as_mut()
            && let Ok(text) = get(stream, &self.url)
        {
            return Ok(text);
        }
        self.stream = None;
        let mut stream = connect(&self.url)?;
        let text = get(&mut stream, &self.url)?;
        self.stream = Some(stream);
        Ok(text)
    }
}

fn connect(url: &MetricsUrl) -> io::Result<TcpStream> {
    let addresses: Vec<SocketAddr> = (url.host.as_str(), url.port).to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for address in addresses {
        match TcpStream::connect_timeout(&address, IO_TIMEOUT) {
            Ok(stream) => {
                stream.set_read_timeout(Some(IO_TIMEOUT))?;
                stream.set_write_timeout(Some(IO_TIMEOUT))?;
                return Ok(stream);
            }
            Err(error) => last = error,
        }
    }
    Err(last)
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// One request and its whole response body.
fn get(stream: &mut TcpStream, url: &MetricsUrl) -> io::Result<String> {
    stream.write_all(&get_request(&url.host, &url.path))?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let head = loop {
        if let Some(head) = parse_response(&mut buf).map_err(|e| invalid(e.to_string()))? {
            break head;
        }
        if buf.len() > MAX_HEAD || read_more(stream, &mut buf)? == 0 {
            return Err(invalid("connection closed before a response"));
        }
    };
    if head.content_length > MAX_BODY {
        return Err(invalid(format!(
            "{} bytes is too large a page",
            head.content_length
        )));
    }
    while buf.len() < head.content_length {
        if read_more(stream, &mut buf)? == 0 {
            return Err(invalid("connection closed mid-response"));
        }
    }
    let body = buf.split_to(head.content_length);
    if head.status != 200 {
        return Err(invalid(format!("HTTP status {}", head.status)));
    }
    String::from_utf8(body.to_vec()).map_err(|_| invalid("the page is not UTF-8"))
}

fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let read = stream.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..read]);
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults() {
        let url = MetricsUrl::parse("http://127.0.0.1:9127/metrics").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("127.0.0.1", 9127, "/metrics")
        );
        let bare = MetricsUrl::parse("localhost:9000").unwrap();
        assert_eq!(bare.to_string(), "http://localhost:9000/metrics");
        let v6 = MetricsUrl::parse("http://[::1]:9127/m").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.to_string()),
            ("::1", "http://[::1]:9127/m".to_owned())
        );
        assert!(MetricsUrl::parse("https://x:1/").is_err());
        assert!(MetricsUrl::parse("http://x/metrics").is_err());
        assert!(MetricsUrl::parse("http://:1/").is_err());
    }

    #[test]
    fn fetches_twice_over_one_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            for body in ["a 1\n", "a 2\n"] {
                let mut request = Vec::new();
                while !request.ends_with(b"\r\n\r\n") {
                    let mut byte = [0];
                    stream.read_exact(&mut byte).unwrap();
                    request.push(byte[0]);
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).unwrap();
            }
        });
        let mut client = Client::new(MetricsUrl::parse(&format!("127.0.0.1:{port}")).unwrap());
        assert_eq!(client.fetch().unwrap(), "a 1\n");
        assert_eq!(client.fetch().unwrap(), "a 2\n");
        server.join().unwrap();
    }
}

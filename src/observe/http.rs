//! The smallest HTTP/1.1 that Prometheus, curl and `churnstile top` need:
//! request and response heads parsed from bytes (sans-IO, so they are
//! tested without sockets), and a keep-alive server loop that answers
//! `GET /metrics` and the probes `GET /healthz` and `GET /readyz`. Keep-alive matters here: a scraper that reconnects every
//! few seconds would add the very TIME_WAIT churnstile exists to prevent.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Longest request or response head accepted.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// How long an idle keep-alive connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a started request may take to arrive in full.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapers served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 32;

const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";

/// What the endpoint serves.
pub(crate) trait Pages: Send + Sync {
    /// The metrics in Prometheus' text format.
    fn metrics(&self) -> String;
    /// `Ok` when churnstile is ready for clients, else one line saying why.
    fn readiness(&self) -> Result<(), String>;
}

/// Why bytes are not an acceptable HTTP head.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("head longer than {MAX_HEAD} bytes")]
    TooLong,
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// The parts of a request head the endpoint looks at.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    method: String,
    path: String,
    /// Whether the client wants the connection closed after the response.
    close: bool,
}

/// The parts of a response head `churnstile top` looks at.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub status: u16,
    pub content_length: usize,
}

/// Splits a complete head off the front of `buf`, or `None` when more
/// bytes are needed.
fn take_head(buf: &mut BytesMut) -> Result<Option<String>, HeadError> {
    let Some(end) = buf.windows(4).position(|window| window == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(HeadError::TooLong)
        } else {
            Ok(None)
        };
    };
    let head = buf.split_to(end + 4);
    String::from_utf8(head[..end].to_vec())
        .map(Some)
        .map_err(|_| HeadError::Malformed("head (not UTF-8)"))
}

/// Header value by case-insensitive name.
fn header<'a>(lines: &[&'a str], name: &str) -> Option<&'a str> {
    lines.iter().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Parses a request head from the front of `buf`.
pub(crate) fn parse_request(buf: &mut BytesMut) -> Result<Option<Request>, HeadError> {
    let Some(head) = take_head(buf)? else {
        return Ok(None);
    };
    let lines: Vec<&str> = head.split("\r\n").collect();
    let mut parts = lines[0].split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("request line"));
    };
    let connection = header(&lines[1..], "connection").map(str::to_ascii_lowercase);
    let close = match version {
        "HTTP/1.1" => connection.as_deref() == Some("close"),
        "HTTP/1.0" => connection.as_deref() != Some("keep-alive"),
        _ => return Err(HeadError::Malformed("HTTP version")),
    };
    let path = target.split('?').next().unwrap_or_default().to_owned();
    Ok(Some(Request {
        method: method.to_owned(),
        path,
        close,
    }))
}

/// Parses a response head from the front of `buf`.
pub(crate) fn parse_response(buf: &mut BytesMut) -> Result<Option<ResponseHead>, HeadError> {
    let Some(head) = take_head(buf)? else {
        return Ok(None);
    };
    let lines: Vec<&str> = head.split("\r\n").collect();
    let status = lines[0]
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or(HeadError::Malformed("status line"))?;
    let content_length = header(&lines[1..], "content-length")
        .ok_or(HeadError::Malformed("response without Content-Length"))?
        .parse()
        .map_err(|_| HeadError::Malformed("Content-Length"))?;
    Ok(Some(ResponseHead {
        status,
        content_length,
    }))
}

/// The full response to `request`.
pub(crate) fn respond(request: &Request, pages: &dyn Pages) -> Vec<u8> {
    let (status, content_type, body) = match (request.method.as_str(), request.path.as_str()) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", METRICS_TYPE, pages.metrics()),
        // Answering at all is the proof of life.
        ("GET" | "HEAD", "/healthz") => ("200 OK", TEXT_TYPE, "ok\n".to_owned()),
        ("GET" | "HEAD", "/readyz") => match pages.readiness() {
            Ok(()) => ("200 OK", TEXT_TYPE, "ready\n".to_owned()),
            Err(why) => ("503 Service Unavailable", TEXT_TYPE, format!("{why}\n")),
        },
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            TEXT_TYPE,
            "not found; served: /metrics, /healthz, /readyz\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            TEXT_TYPE,
            "only GET and HEAD are served\n".to_owned(),
        ),
    };
    let connection = if request.close {
        "Connection: close\r\n"
    } else {
        ""
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{connection}\r\n",
        body.len()
    )
    .into_bytes();
    if request.method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    response
}

/// A plain GET request for `path`, keeping the connection open.
pub(crate) fn get_request(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain\r\n\r\n").into_bytes()
}

/// Answers HTTP requests on `listener` for as long as the process runs
/// (through a graceful shutdown too, so it can be watched).
pub(super) async fn serve(listener: TcpListener, pages: Arc<dyn Pages>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%peer, "too many metrics connections; closing this one");
            continue;
        };
        let pages = Arc::clone(&pages);
        tokio::spawn(async move {
            if let Err(error) = connection(stream, pages.as_ref()).await {
                tracing::debug!(%peer, %error, "metrics connection ended");
            }
            drop(slot);
        });
    }
}

/// Serves requests on one connection until the client closes it, asks to,
/// idles past the timeout or sends something that is not HTTP.
async fn connection(mut stream: TcpStream, pages: &dyn Pages) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let request = loop {
            match parse_request(&mut buf) {
                Ok(Some(request)) => break request,
                Ok(None) => {}
                Err(error) => {
                    let body = format!("{error}\n");
                    let response = format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    return stream.write_all(response.as_bytes()).await;
                }
            }
            let limit = if buf.has_remaining() {
                HEAD_TIMEOUT
            } else {
                IDLE_TIMEOUT
            };
            match tokio::time::timeout(limit, stream.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error),
            }
        };
        stream.write_all(&respond(&request, pages)).await?;
        if request.close {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<Option<Request>, HeadError> {
        parse_request(&mut BytesMut::from(text))
    }

    #[test]
    fn requests_parse_with_keep_alive_rules() {
        let get = request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            get,
            Request {
                method: "GET".into(),
                path: "/metrics".into(),
                close: false
            }
        );
        let close = request("GET /metrics?x=1 HTTP/1.1\r\nConnection: Close\r\n\r\n");
        assert_eq!(close.unwrap().unwrap().path, "/metrics");
        assert!(request("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().close);
        let keep = request("GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n");
        assert!(!keep.unwrap().unwrap().close);
    }

    #[test]
    fn partial_oversized_and_garbled_heads() {
        assert_eq!(request("GET /metrics HTTP/1.1\r\n"), Ok(None));
        let huge = format!("GET /{} HTTP/1.1", "a".repeat(MAX_HEAD));
        assert_eq!(request(&huge), Err(HeadError::TooLong));
        assert!(request("\u{16}\u{3}\u{1}\r\n\r\n").is_err());
        assert!(request("GET /metrics SPDY/3\r\n\r\n").is_err());
    }

    #[test]
    fn pipelined_requests_are_taken_one_at_a_time() {
        let mut buf = BytesMut::from("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
        assert_eq!(parse_request(&mut buf).unwrap().unwrap().path, "/a");
        assert_eq!(parse_request(&mut buf).unwrap().unwrap().path, "/b");
        assert!(buf.is_empty());
    }

    /// Pages with fixed answers.
    struct Fixed(Result<(), String>);

    impl Pages for Fixed {
        fn metrics(&self) -> String {
            "churnstile_up 1\n".to_owned()
        }
        fn readiness(&self) -> Result<(), String> {
            self.0.clone()
        }
    }

    fn answer(text: &str, pages: &dyn Pages) -> String {
        let request = request(text).unwrap().unwrap();
        String::from_utf8(respond(&request, pages)).unwrap()
    }

    #[test]
    fn responses_carry_length_and_only_known_paths_are_served() {
        let pages = Fixed(Ok(()));
        let response = answer("GET /metrics HTTP/1.1\r\n\r\n", &pages);
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("Content-Length: 16\r\n"));
        assert!(response.ends_with("\r\n\r\nchurnstile_up 1\n"));
        let response = answer(
            "HEAD /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
            &pages,
        );
        assert!(
            response.ends_with("Connection: close\r\n\r\n"),
            "{response}"
        );
        assert!(answer("GET /other HTTP/1.1\r\n\r\n", &pages).starts_with("HTTP/1.1 404"));
        assert!(answer("POST /metrics HTTP/1.1\r\n\r\n", &pages).starts_with("HTTP/1.1 405"));
    }

    #[test]
    fn probes_answer_alive_and_ready_or_why_not() {
        let ready = Fixed(Ok(()));
        let draining = Fixed(Err("draining".to_owned()));
        for pages in [&ready, &draining] {
            let response = answer("GET /healthz HTTP/1.1\r\n\r\n", pages);
            assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
            assert!(response.ends_with("\r\n\r\nok\n"), "{response}");
        }
        let response = answer("GET /readyz HTTP/1.1\r\n\r\n", &ready);
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nready\n"), "{response}");
        let response = answer("GET /readyz HTTP/1.1\r\n\r\n", &draining);
        assert!(
            response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{response}"
        );
        assert!(response.ends_with("\r\n\r\ndraining\n"), "{response}");
    }

    #[test]
    fn response_heads_parse_and_leave_the_body() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
        let head = parse_response(&mut buf).unwrap().unwrap();
        assert_eq!(
            head,
            ResponseHead {
                status: 200,
                content_length: 3
            }
        );
        assert_eq!(&buf[..], b"abc");
        let mut chunked = BytesMut::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(parse_response(&mut chunked).is_err());
    }
}

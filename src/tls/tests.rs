//! The TLS builders and [`Stream`]'s TLS variants over loopback TCP, with
//! certificates made at test time.

use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::test_pki::{Pair, TestPki};
use super::*;
use crate::stream::{HandshakeError, Stream};

fn identity(pair: &Pair) -> Identity {
    Identity::load(&pair.cert, &pair.key, &provider()).unwrap()
}

/// An acceptor with a certificate for `names` from `pki`, offering `alpn`.
fn server_for(pki: &TestPki, names: &[&str], alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let identity = identity(&pki.server("server", names));
    acceptor(&identity, None, TlsVersions::default(), alpn).unwrap()
}

fn roots(pki: &TestPki) -> Arc<RootCertStore> {
    Arc::new(load_roots(&pki.ca()).unwrap())
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// A connected loopback pair: (churnstile's accepted end, the client's end).
async fn tcp_pair() -> (Stream, Stream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (
        Stream::accepted_tcp(accepted.unwrap().0),
        Stream::tcp(connected.unwrap()).unwrap(),
    )
}

/// Runs both handshakes at once; the results of the accepting side and
/// the connecting side.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> (
    Result<Stream, HandshakeError>,
    Result<Stream, HandshakeError>,
) {
    let (accepted, connected) = tcp_pair().await;
    tokio::join!(
        accepted.accept_tls(server, b""),
        connected.connect_tls(client, name)
    )
}

#[test]
fn identity_errors_name_the_file_and_reason() {
    let pki = TestPki::new();
    let server = pki.server("server", &["localhost"]);
    let other = pki.server("other", &["localhost"]);
    let expired = pki.expired("expired");
    let provider = provider();

    let mismatch = Identity::load(&server.cert, &other.key, &provider).unwrap_err();
    assert_eq!(mismatch.path(), other.key);
    assert_eq!(
        mismatch.to_string(),
        format!(
            "{} does not match the certificate in {}; give the key the certificate was issued for",
            other.key.display(),
            server.cert.display()
        )
    );
    let error = Identity::load(&expired.cert, &expired.key, &provider).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: the certificate expired on 2021-01-01 00:00:00 UTC; renew it",
            expired.cert.display()
        )
    );
    let missing = pki.dir().join("missing.pem");
    let error = Identity::load(&missing, &server.key, &provider).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot read {}: ", missing.display())),
        "{error}"
    );
    // A key file given as the certificate, and a certificate as the key.
    let error = Identity::load(&server.key, &server.key, &provider).unwrap_err();
    assert!(
        matches!(error, TlsFileError::NoCertificate { .. }),
        "{error}"
    );
    let error = Identity::load(&server.cert, &server.cert, &provider).unwrap_err();
    assert!(matches!(error, TlsFileError::NoKey { .. }), "{error}");
    let truncated = pki.write("cut.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let error = load_roots(&truncated).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{} is not valid PEM: a PEM block has no END line",
            truncated.display()
        )
    );
}

#[test]
fn private_keys_never_appear_in_errors() {
    let pki = TestPki::new();
    let server = pki.server("server", &["localhost"]);
    let key_text = std::fs::read_to_string(&server.key).unwrap();
    let secret_line = key_text.lines().nth(1).unwrap();
    let garbled = pki.write(
        "garbled.key",
        &key_text.replace(secret_line, "!!notbase64!!"),
    );
    let error = Identity::load(&server.cert, &garbled, &provider()).unwrap_err();
    assert!(!error.to_string().contains(&secret_line[..16]), "{error}");
    assert!(
        !format!("{error:?}").contains(&secret_line[..16]),
        "{error:?}"
    );
}

#[tokio::test]
async fn verify_full_connects_to_the_named_host_and_bytes_flow_both_ways() {
    let pki = TestPki::new();
    let server = server_for(&pki, &["localhost", "127.0.0.1"], &[b"postgresql"]);
    let verification = ServerVerification::ChainAndName(roots(&pki));
    let client = connector(
        &verification,
        None,
        TlsVersions::default(),
        &[b"postgresql"],
    )
    .unwrap();
    let (accepted, connected) = handshake(server, client, localhost()).await;
    let (mut accepted, mut connected) = (accepted.unwrap(), connected.unwrap());
    assert_eq!(accepted.tls_version(), Some("TLSv1.3"));
    assert_eq!(connected.tls_version(), Some("TLSv1.3"));
    assert_eq!(accepted.alpn_protocol(), Some(&b"postgresql"[..]));

    let mut probe = [0u8; 16];
    assert_eq!(accepted.try_read_now(&mut probe).unwrap(), None);
    connected.write_all(b"ping").await.unwrap();
    connected.flush().await.unwrap();
    let mut buf = [0u8; 4];
    accepted.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    assert_eq!(accepted.try_write_now(b"pong").unwrap(), 4);
    connected.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
}

#[tokio::test]
async fn try_read_now_sees_data_that_arrived_over_tls() {
    let pki = TestPki::new();
    let server = server_for(&pki, &["localhost"], &[]);
    let client = connector(
        &ServerVerification::EncryptOnly,
        None,
        TlsVersions::default(),
        &[],
    )
    .unwrap();
    let (accepted, connected) = handshake(server, client, localhost()).await;
    let (mut accepted, mut connected) = (accepted.unwrap(), connected.unwrap());
    accepted.write_all(b"late FATAL").await.unwrap();
    accepted.flush().await.unwrap();
    let mut probe = [0u8; 64];
    let mut seen = None;
    for _ in 0..200 {
        seen = connected.try_read_now(&mut probe).unwrap();
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(seen, Some(10));
    assert_eq!(&probe[..10], b"late FATAL");
    drop(accepted);
    let mut eof = None;
    for _ in 0..200 {
        eof = connected.try_read_now(&mut probe).unwrap_or(Some(0));
        if eof.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(eof, Some(0));
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_name_and_verify_ca_accepts_it() {
    let pki = TestPki::new();
    let server = server_for(&pki, &["db.example.internal"], &[]);
    let full = ServerVerification::ChainAndName(roots(&pki));
    let client = connector(&full, None, TlsVersions::default(), &[]).unwrap();
    let (_, connected) = handshake(Arc::clone(&server), client, localhost()).await;
    let error = connected.unwrap_err().to_string();
    assert!(error.contains("not valid for name"), "{error}");

    let chain = ServerVerification::Chain(roots(&pki));
    let client = connector(&chain, None, TlsVersions::default(), &[]).unwrap();
    let (accepted, connected) = handshake(server, client, localhost()).await;
    assert!(accepted.is_ok() && connected.is_ok());
}

#[tokio::test]
async fn verify_ca_refuses_a_certificate_from_another_ca() {
    let (ours, theirs) = (TestPki::new(), TestPki::new());
    let server = server_for(&theirs, &["localhost"], &[]);
    let chain = ServerVerification::Chain(roots(&ours));
    let client = connector(&chain, None, TlsVersions::default(), &[]).unwrap();
    let (_, connected) = handshake(server, client, localhost()).await;
    let error = connected.unwrap_err().to_string();
    assert!(error.contains("invalid peer certificate"), "{error}");
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_given() {
    let pki = TestPki::new();
    let server = acceptor(
        &identity(&pki.server("server", &["localhost"])),
        Some(roots(&pki)),
        TlsVersions::default(),
        &[],
    )
    .unwrap();
    let verification = ServerVerification::ChainAndName(roots(&pki));
    let anonymous = connector(&verification, None, TlsVersions::default(), &[]).unwrap();
    let (accepted, _) = handshake(Arc::clone(&server), anonymous, localhost()).await;
    let error = accepted.unwrap_err().to_string();
    assert!(error.contains("peer sent no certificates"), "{error}");

    let alice = identity(&pki.client("alice", "alice"));
    let with_cert = connector(&verification, Some(&alice), TlsVersions::default(), &[]).unwrap();
    let (accepted, connected) = handshake(server, with_cert, localhost()).await;
    assert!(accepted.is_ok() && connected.is_ok());
}

#[tokio::test]
async fn versions_limit_what_is_negotiated() {
    let pki = TestPki::new();
    let only_12 = TlsVersions {
        tls12: true,
        tls13: false,
    };
    let server = acceptor(
        &identity(&pki.server("server", &["localhost"])),
        None,
        only_12,
        &[],
    )
    .unwrap();
    let verification = ServerVerification::EncryptOnly;
    let client = connector(&verification, None, TlsVersions::default(), &[]).unwrap();
    let (accepted, _) = handshake(Arc::clone(&server), client, localhost()).await;
    assert_eq!(accepted.unwrap().tls_version(), Some("TLSv1.2"));
    let only_13 = TlsVersions {
        tls12: false,
        tls13: true,
    };
    let client = connector(&verification, None, only_13, &[]).unwrap();
    let (accepted, connected) = handshake(server, client, localhost()).await;
    assert!(accepted.is_err() && connected.is_err());
}

#[tokio::test]
async fn a_client_hello_already_read_by_the_protocol_is_fed_to_the_handshake() {
    let pki = TestPki::new();
    let server = server_for(&pki, &["localhost"], &[b"postgresql"]);
    let verification = ServerVerification::ChainAndName(roots(&pki));
    let client = connector(
        &verification,
        None,
        TlsVersions::default(),
        &[b"postgresql"],
    )
    .unwrap();
    let (mut accepted, connected) = tcp_pair().await;
    let connecting = tokio::spawn(connected.connect_tls(client, localhost()));
    // What a protocol reads to tell a TLS record (0x16) from a startup packet.
    let mut first = [0u8; 8];
    accepted.read_exact(&mut first).await.unwrap();
    assert_eq!(first[0], 0x16);
    let accepted = accepted.accept_tls(server, &first).await.unwrap();
    assert_eq!(accepted.alpn_protocol(), Some(&b"postgresql"[..]));
    assert!(connecting.await.unwrap().is_ok());
}

#[tokio::test]
async fn garbage_instead_of_a_client_hello_fails_the_handshake_cleanly() {
    let pki = TestPki::new();
    let server = server_for(&pki, &["localhost"], &[]);
    let (accepted, mut connected) = tcp_pair().await;
    let accepting = tokio::spawn(accepted.accept_tls(server, b""));
    connected
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let error = accepting.await.unwrap().unwrap_err();
    assert!(matches!(error, HandshakeError::Failed(_)), "{error}");
    // churnstile answers with one TLS alert record at most, then closes.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        connected.read_to_end(&mut rest),
    )
    .await
    .unwrap();
    assert!(read.is_ok(), "{read:?}");
    assert!(
        rest.is_empty() || (rest.len() == 7 && rest[0] == 0x15),
        "{rest:?}"
    );
}

#[tokio::test]
async fn tls_cannot_start_twice_or_on_a_unix_socket() {
    let (a, _b) = tokio::net::UnixStream::pair().unwrap();
    let pki = TestPki::new();
    let server = server_for(&pki, &["localhost"], &[]);
    let error = Stream::Unix(a).accept_tls(server, b"").await.unwrap_err();
    assert_eq!(error.to_string(), "TLS is not available over a Unix socket");
}

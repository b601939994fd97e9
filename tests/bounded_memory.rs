//! No client can make churnstile hold more than a fixed amount for it: a
//! message declared larger than the limit that applies where it arrives
//! (the startup packet, a password, a first message before a server is
//! attached, a message held whole under transaction pooling, a console
//! command) is refused with 08P01 as soon as its header arrives, before its
//! body is read, so a client streaming a gigabyte leaves RSS flat.

mod support;

use support::raw_pg::{self, RawConnection, error_fields};
use support::{MD5_USER, PgServer, Proxy, TRUST_USER, pg_proxy_config, trust_proxy_config};

/// One gigabyte minus one: PostgreSQL's own message limit.
const GIGABYTE: usize = (1 << 30) - 1;
/// The RSS churnstile must stay under while clients stream gigabytes.
const RSS_LIMIT_KB: u64 = 64 * 1024;

/// A message header declaring a body of `len - 4` bytes.
fn header(tag: u8, len: u32) -> Vec<u8> {
    let mut bytes = vec![tag];
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes
}

/// Reads the ErrorResponse the header earned, then streams up to a
/// gigabyte behind it; returns its SQLSTATE and message and what was written.
async fn refused_then_streamed(connection: &mut RawConnection) -> (String, String, usize) {
    let error = connection.expect_message().await;
    assert_eq!(error.0, b'E', "{error:?}");
    let fields = error_fields(&error);
    let written = connection.stream_filler(GIGABYTE).await;
    (fields[&'C'].clone(), fields[&'M'].clone(), written)
}

async fn logged_in(proxy: &Proxy, user: &str) -> RawConnection {
    let mut connection = RawConnection::connect(proxy.port()).await;
    connection.send(&raw_pg::app_startup(user)).await;
    connection.wait_ready().await;
    connection
}

#[tokio::test]
async fn a_client_declaring_a_gigabyte_query_is_refused_before_its_body_and_rss_stays_flat() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&trust_proxy_config(
        &pg,
        "[pool]\npool_mode = \"transaction\"\n",
    ));
    for _ in 0..3 {
        let mut client = logged_in(&proxy, TRUST_USER.name).await;
        client.send(&header(b'Q', GIGABYTE as u32)).await;
        let (code, message, written) = refused_then_streamed(&mut client).await;
        assert_eq!(code, "08P01");
        assert_eq!(
            message,
            "message type 'Q' is 1073741823 bytes, over the 67108864 byte limit"
        );
        assert!(written < GIGABYTE, "churnstile read the whole body");
    }
    // Over PostgreSQL's limit, even where the message would be streamed.
    let session = Proxy::start(&trust_proxy_config(&pg, ""));
    let mut client = logged_in(&session, TRUST_USER.name).await;
    client.send(&header(b'Q', u32::MAX)).await;
    let (code, message, _) = refused_then_streamed(&mut client).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "08P01",
            "message type 'Q' is 4294967295 bytes, over the 1073741823 byte limit"
        )
    );
    for proxy in [&proxy, &session] {
        let rss = proxy.rss_peak_kb();
        assert!(rss < RSS_LIMIT_KB, "peak RSS {rss} KiB");
    }
}

#[tokio::test]
async fn huge_startup_packets_and_passwords_are_refused_before_their_body() {
    let pg = PgServer::start();
    let proxy = Proxy::start(&pg_proxy_config(&pg, ""));

    let mut startup = RawConnection::connect(proxy.port()).await;
    startup.send(&(GIGABYTE as u32).to_be_bytes()).await;
    let (code, _, written) = refused_then_streamed(&mut startup).await;
    assert_eq!(code, "08P01");
    assert!(written < GIGABYTE);

    let mut login = RawConnection::connect(proxy.port()).await;
    login.send(&raw_pg::app_startup(MD5_USER.name)).await;
    assert_eq!(
        raw_pg::auth_code(&login.expect_message().await),
        raw_pg::AUTH_MD5
    );
    login.send(&header(b'p', GIGABYTE as u32)).await;
    let (code, message, written) = refused_then_streamed(&mut login).await;
    assert_eq!(code, "08P01", "{message}");
    assert!(written < GIGABYTE);

    let rss = proxy.rss_peak_kb();
    assert!(rss < RSS_LIMIT_KB, "peak RSS {rss} KiB");
}

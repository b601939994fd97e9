//! TLS clients for tests: tokio-postgres over rustls (tokio-postgres-rustls)
//! verifying the server against a test CA, as `sslmode=verify-full` does,
//! optionally presenting a client certificate.

use std::path::Path;
use std::sync::Arc;

use churnstile::tls::{Identity, ServerVerification, TlsVersions, connector, load_roots, provider};
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::test_pki::Pair;

/// A rustls client configuration trusting `ca` and checking the host name,
/// presenting `certificate` when given.
pub fn verify_full(ca: &Path, certificate: Option<&Pair>) -> Arc<rustls::ClientConfig> {
    let roots = Arc::new(load_roots(ca).expect("reading the test CA"));
    let identity = certificate.map(|pair| {
        Identity::load(&pair.cert, &pair.key, &provider()).expect("reading the client certificate")
    });
    let verification = ServerVerification::ChainAndName(roots);
    connector(
        &verification,
        identity.as_ref(),
        TlsVersions::default(),
        &[],
    )
    .expect("building a client TLS configuration")
}

/// Connects with TLS (`connection_string` should say `sslmode=require`)
/// and spawns the connection task.
pub async fn connect(
    connection_string: &str,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Client, tokio_postgres::Error> {
    let make_tls = MakeRustlsConnect::new(Arc::unwrap_or_clone(tls));
    let (client, connection) = tokio_postgres::connect(connection_string, make_tls).await?;
    tokio::spawn(async move {
        // Reported to the client as a closed connection; nothing to add here.
        let _ = connection.await;
    });
    Ok(client)
}

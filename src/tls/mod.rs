//! TLS for both legs, whichever protocol: loading certificates and keys
//! ([`Identity`], CA bundles), and building the rustls configurations
//! churnstile accepts clients with ([`acceptor`]) and connects to upstream
//! servers with ([`connector`]), and holding what the protocols use
//! ([`TlsContexts`]). rustls with the `ring` provider: no OpenSSL, no
//! cmake. Knows nothing of the configuration file; the core maps sslmodes
//! onto these builders.

mod contexts;
mod files;
mod verify;
mod x509;

use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use rustls::version::{TLS12, TLS13};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

pub use contexts::{ClientTlsContext, POSTGRES_ALPN, TlsContexts, UpstreamTls};
pub use files::{Identity, TlsFileError, load_roots, system_roots};

/// The TLS versions one leg allows; rustls implements none older than 1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsVersions {
    pub tls12: bool,
    pub tls13: bool,
}

impl Default for TlsVersions {
    fn default() -> Self {
        TlsVersions {
            tls12: true,
            tls13: true,
        }
    }
}

impl TlsVersions {
    fn rustls(self) -> Vec<&'static SupportedProtocolVersion> {
        let mut versions = Vec::with_capacity(2);
        if self.tls13 {
            versions.push(&TLS13);
        }
        if self.tls12 {
            versions.push(&TLS12);
        }
        versions
    }
}

/// How an upstream server's certificate is checked.
#[derive(Debug, Clone)]
pub enum ServerVerification {
    /// Encrypt, but accept any certificate (`prefer`, `require`).
    EncryptOnly,
    /// The chain must lead to one of these CAs (`verify-ca`).
    Chain(Arc<RootCertStore>),
    /// The chain must lead to one of these CAs, and the certificate must
    /// be for the host churnstile connects to (`verify-full`).
    ChainAndName(Arc<RootCertStore>),
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    File(#[from] TlsFileError),
    #[error("{what}: {reason}")]
    Config { what: &'static str, reason: String },
}

fn config_error(what: &'static str) -> impl FnOnce(rustls::Error) -> TlsError {
    move |error| TlsError::Config {
        what,
        reason: error.to_string(),
    }
}

/// The `ring` provider, built once: every configuration shares it.
/// rustls deprecates it for lacking post-quantum key exchange, which only
/// its aws-lc-rs provider has, and that one needs cmake and a C toolchain
/// to build; X25519 and the NIST curves remain what PostgreSQL and MySQL
/// servers and clients negotiate today.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// The configuration churnstile accepts TLS clients with. With `client_ca`
/// every client must present a certificate issued by one of those CAs.
/// `alpn` lists the application protocols offered (PostgreSQL's direct TLS
/// requires `postgresql`); a client that offers others is refused.
pub fn acceptor(
    identity: &Identity,
    client_ca: Option<Arc<RootCertStore>>,
    versions: TlsVersions,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions.rustls())
        .map_err(config_error("client_tls_protocols"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|error| TlsError::Config {
                    what: "client_tls_ca_file",
                    reason: error.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let resolver = SingleCertAndKey::from(Arc::clone(&identity.key));
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The configuration churnstile connects to upstream servers with;
/// `identity` is the client certificate it presents, if any.
pub fn connector(
    verification: &ServerVerification,
    identity: Option<&Identity>,
    versions: TlsVersions,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions.rustls())
        .map_err(config_error("server_tls_protocols"))?;
    let webpki = |roots: &Arc<RootCertStore>| {
        WebPkiServerVerifier::builder_with_provider(Arc::clone(roots), provider())
            .build()
            .map_err(|error| TlsError::Config {
                what: "server_tls_ca_file",
                reason: error.to_string(),
            })
    };
    let builder =
        match verification {
            ServerVerification::EncryptOnly => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verify::EncryptOnly {
                    provider: provider(),
                })),
            ServerVerification::Chain(roots) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verify::ChainOnly {
                    webpki: webpki(roots)?,
                })),
            ServerVerification::ChainAndName(roots) => builder.with_webpki_verifier(webpki(roots)?),
        };
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::clone(&identity.key)))),
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
pub(crate) mod test_pki;

#[cfg(test)]
mod tests;

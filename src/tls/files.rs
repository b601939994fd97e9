//! Reading certificates, private keys and CA bundles from PEM files, and
//! refusing the mistakes an operator makes with them (an unreadable file,
//! a key that belongs to another certificate, an expired certificate) with
//! the file's path and the reason. Private key material never appears in
//! an error.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::x509;

/// What is wrong with a certificate, key or CA file.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")", path.display())]
    NoCertificate { path: PathBuf },
    #[error(
        "{} holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC \
         \"-----BEGIN ... PRIVATE KEY-----\")",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("{} is not valid PEM: {reason}", path.display())]
    BadPem { path: PathBuf, reason: String },
    #[error("{}: unsupported private key: {reason}", path.display())]
    UnsupportedKey { path: PathBuf, reason: String },
    #[error(
        "{} does not match the certificate in {}; give the key the certificate was issued for",
        key.display(),
        certificate.display()
    )]
    KeyMismatch { key: PathBuf, certificate: PathBuf },
    #[error("{}: the certificate is not a well-formed X.509 certificate", path.display())]
    Malformed { path: PathBuf },
    #[error("{}: the certificate expired on {not_after}; renew it", path.display())]
    Expired { path: PathBuf, not_after: String },
    #[error("{}: the certificate is not valid before {not_before}", path.display())]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("{}: no usable CA certificate: {reason}", path.display())]
    BadCa { path: PathBuf, reason: String },
}

impl TlsFileError {
    /// The file at fault: for a mismatch, the key.
    pub fn path(&self) -> &Path {
        match self {
            TlsFileError::Unreadable { path, .. }
            | TlsFileError::NoCertificate { path }
            | TlsFileError::NoKey { path }
            | TlsFileError::BadPem { path, .. }
            | TlsFileError::UnsupportedKey { path, .. }
            | TlsFileError::KeyMismatch { key: path, .. }
            | TlsFileError::Malformed { path }
            | TlsFileError::Expired { path, .. }
            | TlsFileError::NotYetValid { path, .. }
            | TlsFileError::BadCa { path, .. } => path,
        }
    }
}

/// A certificate chain and the private key it was issued for, checked to
/// belong together and to be valid now.
#[derive(Debug, Clone)]
pub struct Identity {
    pub key: Arc<CertifiedKey>,
}

impl Identity {
    /// Reads `certificate` (the chain, leaf first) and `key`.
    pub fn load(
        certificate: &Path,
        key: &Path,
        provider: &CryptoProvider,
    ) -> Result<Self, TlsFileError> {
        let chain = read_certificates(certificate)?;
        check_validity(certificate, &chain[0], SystemTime::now())?;
        let der = read_key(key)?;
        let signing_key = provider
            .key_provider
            .load_private_key(der)
            .map_err(|error| TlsFileError::UnsupportedKey {
                path: key.to_owned(),
                reason: error.to_string(),
            })?;
        let certified = CertifiedKey::new(chain, signing_key);
        certified
            .keys_match()
            .map_err(|_| TlsFileError::KeyMismatch {
                key: key.to_owned(),
                certificate: certificate.to_owned(),
            })?;
        Ok(Identity {
            key: Arc::new(certified),
        })
    }
}

/// The CA certificates in `path`, as trust anchors.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path)? {
        roots
            .add(certificate)
            .map_err(|error| TlsFileError::BadCa {
                path: path.to_owned(),
                reason: error.to_string(),
            })?;
    }
    Ok(roots)
}

/// The operating system's trust store (what `server_tls_ca_file` defaults
/// to); certificates it cannot parse are skipped, as browsers do.
pub fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "skipping part of the system trust store");
    }
    let mut roots = RootCertStore::empty();
    let (added, skipped) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, skipped, "loaded the system trust store");
    roots
}

/// Every certificate in a PEM file, at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let text = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad_pem(path, error))?;
    if chain.is_empty() {
        return Err(TlsFileError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsFileError::NoKey {
            path: path.to_owned(),
        },
        error => bad_pem(path, error),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Unreadable {
        path: path.to_owned(),
        source,
    })
}

/// The PEM parser's reason, which never quotes the file's contents.
fn bad_pem(path: &Path, error: pem::Error) -> TlsFileError {
    let reason = match error {
        pem::Error::Io(error) => error.to_string(),
        pem::Error::Base64Decode(_) => "bad base64 inside a PEM block".to_owned(),
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".to_owned(),
        pem::Error::NoItemsFound => "no PEM block found".to_owned(),
        _ => "unreadable PEM".to_owned(),
    };
    TlsFileError::BadPem {
        path: path.to_owned(),
        reason,
    }
}

/// Refuses a certificate outside its validity period at `now`.
fn check_validity(
    path: &Path,
    certificate: &CertificateDer<'_>,
    now: SystemTime,
) -> Result<(), TlsFileError> {
    let validity = x509::validity(certificate).ok_or_else(|| TlsFileError::Malformed {
        path: path.to_owned(),
    })?;
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    if now > validity.not_after.unix {
        return Err(TlsFileError::Expired {
            path: path.to_owned(),
            not_after: validity.not_after.text,
        });
    }
    if now < validity.not_before.unix {
        return Err(TlsFileError::NotYetValid {
            path: path.to_owned(),
            not_before: validity.not_before.text,
        });
    }
    Ok(())
}

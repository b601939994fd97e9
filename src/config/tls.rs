//! The TLS keys: `client_tls_*` in `[general]`, `server_tls_*` in `[pool]`
//! (a database may override `server_tls_sslmode` and `server_tls_ca_file`).
//! The files they name are read here too, so `check-config` and startup
//! report an unreadable file, a key that does not match its certificate, an
//! expired certificate or a mode that needs a missing file at the key that
//! names it.

use std::path::PathBuf;

use toml::Spanned;

use super::error::Diagnostics;
use super::section::Section;
use super::types::{ClientTls, ClientTlsMode, ServerTls, ServerTlsMode, TlsVersions};
use crate::tls::{Identity, load_roots, provider};

/// The keys of `[general]` read here.
pub(super) const CLIENT_TLS_KEYS: &[&str] = &[
    "client_tls_sslmode",
    "client_tls_cert_file",
    "client_tls_key_file",
    "client_tls_ca_file",
    "client_tls_protocols",
];

/// The keys of `[pool]` read here.
pub(super) const SERVER_TLS_KEYS: &[&str] = &[
    "server_tls_sslmode",
    "server_tls_ca_file",
    "server_tls_cert_file",
    "server_tls_key_file",
    "server_tls_protocols",
];

/// The server TLS keys a `[databases.NAME]` may override.
pub(super) const DATABASE_TLS_KEYS: &[&str] = &["server_tls_sslmode", "server_tls_ca_file"];

pub(super) fn read_client_tls(section: &Section, diagnostics: &mut Diagnostics) -> ClientTls {
    let mut tls = ClientTls::default();
    let mode = section.choice::<ClientTlsMode>("client_tls_sslmode", diagnostics);
    if let Some(mode) = mode {
        tls.sslmode = mode;
    }
    let cert = path(section, "client_tls_cert_file", diagnostics);
    let key = path(section, "client_tls_key_file", diagnostics);
    let ca = path(section, "client_tls_ca_file", diagnostics);
    if let Some(versions) = protocols(section, "client_tls_protocols", diagnostics) {
        tls.protocols = versions;
    }
    check_identity(section, &cert, &key, "client_tls", diagnostics);
    check_ca(section, &ca, "client_tls_ca_file", diagnostics);
    let mode_error = |message: String, diagnostics: &mut Diagnostics| {
        let span = section.value_span("client_tls_sslmode").unwrap_or_default();
        diagnostics.error(span, section.field("client_tls_sslmode"), message);
    };
    if tls.sslmode.offers_tls() && (cert.is_none() || key.is_none()) {
        mode_error(
            format!(
                "client_tls_sslmode = \"{}\" needs client_tls_cert_file and client_tls_key_file \
                 (churnstile's certificate and key)",
                tls.sslmode.name()
            ),
            diagnostics,
        );
    }
    if tls.sslmode.verifies_client_certificates() && ca.is_none() {
        mode_error(
            format!(
                "client_tls_sslmode = \"{}\" needs client_tls_ca_file, the CA that issues \
                 client certificates",
                tls.sslmode.name()
            ),
            diagnostics,
        );
    }
    tls.cert_file = cert.map(Spanned::into_inner);
    tls.key_file = key.map(Spanned::into_inner);
    tls.ca_file = ca.map(Spanned::into_inner);
    tls
}

/// `base` with the server TLS keys `section` sets applied: `[pool]` may
/// set every one, a database (`DATABASE_TLS_KEYS`) only the mode and the
/// CA, its others being reported as unknown keys. Files are checked where
/// they are named, not again where they are inherited.
pub(super) fn read_server_tls(
    section: &Section,
    base: &ServerTls,
    allowed: &[&str],
    diagnostics: &mut Diagnostics,
) -> ServerTls {
    let mut tls = base.clone();
    if let Some(mode) = section.choice::<ServerTlsMode>("server_tls_sslmode", diagnostics) {
        tls.sslmode = mode;
    }
    let ca = path(section, "server_tls_ca_file", diagnostics);
    check_ca(section, &ca, "server_tls_ca_file", diagnostics);
    if let Some(ca) = ca {
        tls.ca_file = Some(ca.into_inner());
    }
    if !allowed.contains(&"server_tls_cert_file") {
        return tls;
    }
    if let Some(versions) = protocols(section, "server_tls_protocols", diagnostics) {
        tls.protocols = versions;
    }
    let cert = path(section, "server_tls_cert_file", diagnostics);
    let key = path(section, "server_tls_key_file", diagnostics);
    check_identity(section, &cert, &key, "server_tls", diagnostics);
    if cert.is_some() || key.is_some() {
        tls.cert_file = cert.map(Spanned::into_inner);
        tls.key_file = key.map(Spanned::into_inner);
    }
    tls
}

/// A file path; an empty string is reported, not taken for "no file".
fn path(section: &Section, key: &str, diagnostics: &mut Diagnostics) -> Option<Spanned<PathBuf>> {
    let value = section.string(key, diagnostics)?;
    if value.get_ref().is_empty() {
        diagnostics.error(
            value.span(),
            section.field(key),
            "empty path; leave the key out instead",
        );
        return None;
    }
    let span = value.span();
    Some(Spanned::new(span, PathBuf::from(value.into_inner())))
}

/// A certificate needs its key and the other way round; when both are
/// given they must load (readable, matching, valid now).
fn check_identity(
    section: &Section,
    cert: &Option<Spanned<PathBuf>>,
    key: &Option<Spanned<PathBuf>>,
    prefix: &str,
    diagnostics: &mut Diagnostics,
) {
    let (cert_key, key_key) = (format!("{prefix}_cert_file"), format!("{prefix}_key_file"));
    match (cert, key) {
        (Some(cert), Some(key)) => {
            if let Err(error) = Identity::load(cert.get_ref(), key.get_ref(), &provider()) {
                let (span, field) = if error.path() == key.get_ref() {
                    (key.span(), key_key)
                } else {
                    (cert.span(), cert_key)
                };
                diagnostics.error(span, section.field(&field), error.to_string());
            }
        }
        (Some(cert), None) => diagnostics.error(
            cert.span(),
            section.field(&cert_key),
            format!("{cert_key} without {key_key}; give the certificate's private key too"),
        ),
        (None, Some(key)) => diagnostics.error(
            key.span(),
            section.field(&key_key),
            format!("{key_key} without {cert_key}; give the key's certificate too"),
        ),
        (None, None) => {}
    }
}

fn check_ca(
    section: &Section,
    ca: &Option<Spanned<PathBuf>>,
    key: &str,
    diagnostics: &mut Diagnostics,
) {
    if let Some(ca) = ca
        && let Err(error) = load_roots(ca.get_ref())
    {
        diagnostics.error(ca.span(), section.field(key), error.to_string());
    }
}

/// PgBouncer's `*_tls_protocols`: `secure` (TLS 1.2 and 1.3, the
/// default), `all`, or a list such as `"tlsv1.2,tlsv1.3"`.
fn protocols(section: &Section, key: &str, diagnostics: &mut Diagnostics) -> Option<TlsVersions> {
    let value = section.string(key, diagnostics)?;
    match parse_protocols(value.get_ref()) {
        Ok(versions) => Some(versions),
        Err(message) => {
            diagnostics.error(value.span(), section.field(key), message);
            None
        }
    }
}

fn parse_protocols(text: &str) -> Result<TlsVersions, String> {
    let mut versions = TlsVersions {
        tls12: false,
        tls13: false,
    };
    let words = text.split([',', ' ']).filter(|word| !word.is_empty());
    for word in words {
        match word.to_ascii_lowercase().as_str() {
            "secure" | "all" => versions = TlsVersions::default(),
            "tlsv1.2" => versions.tls12 = true,
            "tlsv1.3" => versions.tls13 = true,
            "tlsv1" | "tlsv1.0" | "tlsv1.1" | "legacy" => {
                return Err(format!(
                    "{word:?} is not supported: TLS 1.0 and 1.1 are broken and rustls does not \
                     implement them; use \"secure\" (TLS 1.2 and 1.3)"
                ));
            }
            _ => {
                return Err(format!(
                    "unknown TLS protocol {word:?}; write \"secure\", \"all\", \"tlsv1.2\", \
                     \"tlsv1.3\" or a list such as \"tlsv1.2,tlsv1.3\""
                ));
            }
        }
    }
    if !versions.tls12 && !versions.tls13 {
        return Err("no TLS protocol given; write \"secure\" for TLS 1.2 and 1.3".to_owned());
    }
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse_str;
    use crate::tls::test_pki::TestPki;

    const TAIL: &str = "[databases.app]\n[users.a]\npassword = \"x\"\n";

    fn errors(text: &str) -> Vec<String> {
        match parse_str(text, "c.toml") {
            Ok(config) => panic!("expected errors, got {config:?}"),
            Err(errors) => errors.errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn quoted(path: &Path) -> String {
        format!("{:?}", path.display().to_string())
    }

    #[test]
    fn both_legs_are_read_with_their_files() {
        let pki = TestPki::new();
        let server = pki.server("server", &["localhost"]);
        let client = pki.client("churnstile", "churnstile");
        let text = format!(
            "[general]\nclient_tls_sslmode = \"verify-full\"\nclient_tls_cert_file = {}\n\
             client_tls_key_file = {}\nclient_tls_ca_file = {}\nclient_tls_protocols = \"tlsv1.3\"\n\
             [pool]\nserver_tls_sslmode = \"require\"\nserver_tls_cert_file = {}\n\
             server_tls_key_file = {}\n\
             [databases.app]\nserver_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = {}\n\
             [databases.other]\n[users.a]\npassword = \"x\"\n",
            quoted(&server.cert),
            quoted(&server.key),
            quoted(&pki.ca()),
            quoted(&client.cert),
            quoted(&client.key),
            quoted(&pki.ca()),
        );
        let config = parse_str(&text, "c.toml").unwrap_or_else(|errors| panic!("{errors}"));
        let tls = &config.general.client_tls;
        assert_eq!(tls.sslmode, ClientTlsMode::VerifyFull);
        assert_eq!(tls.cert_file.as_deref(), Some(server.cert.as_path()));
        assert_eq!(tls.ca_file.as_deref(), Some(pki.ca().as_path()));
        let only_13 = TlsVersions {
            tls12: false,
            tls13: true,
        };
        assert_eq!(tls.protocols, only_13);
        let app = &config.databases["app"].pool.server_tls;
        assert_eq!(app.sslmode, ServerTlsMode::VerifyFull);
        assert_eq!(app.ca_file.as_deref(), Some(pki.ca().as_path()));
        assert_eq!(app.cert_file.as_deref(), Some(client.cert.as_path()));
        let other = &config.databases["other"].pool.server_tls;
        assert_eq!(other.sslmode, ServerTlsMode::Require);
        assert_eq!(other.ca_file, None);
        assert_eq!(
            config.pool.server_tls.key_file.as_deref(),
            Some(client.key.as_path())
        );
    }

    #[test]
    fn defaults_are_pgbouncers() {
        let config = parse_str(TAIL, "c.toml").unwrap();
        assert_eq!(config.general.client_tls, ClientTls::default());
        assert_eq!(config.general.client_tls.sslmode, ClientTlsMode::Disable);
        assert_eq!(config.pool.server_tls.sslmode, ServerTlsMode::Prefer);
        assert_eq!(config.pool.server_tls.protocols, TlsVersions::default());
    }

    #[test]
    fn file_mistakes_are_reported_at_the_key_that_names_the_file() {
        let pki = TestPki::new();
        let server = pki.server("server", &["localhost"]);
        let other = pki.server("other", &["localhost"]);
        let expired = pki.expired("expired");
        let missing = pki.dir().join("missing-ca.pem");
        let text = format!(
            "[general]\nclient_tls_sslmode = \"require\"\nclient_tls_cert_file = {}\n\
             client_tls_key_file = {}\n\
             [pool]\nserver_tls_cert_file = {}\nserver_tls_key_file = {}\n\
             server_tls_ca_file = {}\n{TAIL}",
            quoted(&server.cert),
            quoted(&other.key),
            quoted(&expired.cert),
            quoted(&expired.key),
            quoted(&missing),
        );
        let errors = errors(&text);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert_eq!(
            errors[0],
            format!(
                "c.toml:4:23: general.client_tls_key_file: {} does not match the certificate \
                 in {}; give the key the certificate was issued for",
                other.key.display(),
                server.cert.display()
            )
        );
        assert_eq!(
            errors[1],
            format!(
                "c.toml:6:24: pool.server_tls_cert_file: {}: the certificate expired on \
                 2021-01-01 00:00:00 UTC; renew it",
                expired.cert.display()
            )
        );
        assert!(
            errors[2].starts_with(&format!(
                "c.toml:8:22: pool.server_tls_ca_file: cannot read {}: No such file",
                missing.display()
            )),
            "{}",
            errors[2]
        );
    }

    #[test]
    fn a_mode_that_needs_a_missing_file_says_which() {
        let pki = TestPki::new();
        let server = pki.server("server", &["localhost"]);
        let text = format!("[general]\nclient_tls_sslmode = \"prefer\"\n{TAIL}");
        assert_eq!(
            errors(&text),
            [
                "c.toml:2:22: general.client_tls_sslmode: client_tls_sslmode = \"prefer\" needs \
              client_tls_cert_file and client_tls_key_file (churnstile's certificate and key)"
            ]
        );
        let text = format!(
            "[general]\nclient_tls_sslmode = \"verify-ca\"\nclient_tls_cert_file = {}\n\
             client_tls_key_file = {}\n{TAIL}",
            quoted(&server.cert),
            quoted(&server.key)
        );
        assert_eq!(
            errors(&text),
            [
                "c.toml:2:22: general.client_tls_sslmode: client_tls_sslmode = \"verify-ca\" needs \
              client_tls_ca_file, the CA that issues client certificates"
            ]
        );
        let text = format!(
            "[pool]\nserver_tls_cert_file = {}\n{TAIL}",
            quoted(&server.cert)
        );
        assert_eq!(
            errors(&text),
            [
                "c.toml:2:24: pool.server_tls_cert_file: server_tls_cert_file without \
              server_tls_key_file; give the certificate's private key too"
            ]
        );
    }

    #[test]
    fn a_database_overrides_only_the_mode_and_the_ca() {
        let text = "[databases.app]\nserver_tls_sslmode = \"verify-cs\"\n\
                    server_tls_key_file = \"/k\"\n[users.a]\npassword = \"x\"\n";
        let errors = errors(text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].starts_with(
            "c.toml:2:22: databases.app.server_tls_sslmode: unknown variant `verify-cs`, \
             expected one of `disable`, `prefer`, `require`, `verify-ca`, `verify-full`"
        ));
        assert!(
            errors[1].starts_with("c.toml:3:1: databases.app.server_tls_key_file: unknown key")
        );
    }

    #[test]
    fn protocols_follow_pgbouncers_spelling() {
        let both = TlsVersions::default();
        assert_eq!(parse_protocols("secure"), Ok(both));
        assert_eq!(parse_protocols("all"), Ok(both));
        assert_eq!(parse_protocols("TLSv1.2, tlsv1.3"), Ok(both));
        let only_12 = TlsVersions {
            tls12: true,
            tls13: false,
        };
        assert_eq!(parse_protocols("tlsv1.2"), Ok(only_12));
        assert!(
            parse_protocols("tlsv1.1")
                .unwrap_err()
                .contains("TLS 1.0 and 1.1 are broken")
        );
        assert!(
            parse_protocols("tls13")
                .unwrap_err()
                .starts_with("unknown TLS protocol \"tls13\"")
        );
        assert!(
            parse_protocols("")
                .unwrap_err()
                .starts_with("no TLS protocol given")
        );
        let text = format!("[general]\nclient_tls_protocols = \"legacy\"\n{TAIL}");
        assert!(
            errors(&text)[0].starts_with(
                "c.toml:2:24: general.client_tls_protocols: \"legacy\" is not supported"
            )
        );
    }
}

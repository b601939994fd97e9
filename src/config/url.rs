//! Upstream URLs of the zero-config sidecar form, such as
//! `postgres://USER:PASSWORD@HOST:PORT/DB` or `mysql://USER:PASSWORD@HOST:PORT/DB`,
//! parsed and percent-decoded; `sidecar.rs` builds a configuration from them.

use super::types::{Protocol, ServerTls, ServerTlsMode};

const SCHEMES: &[(&str, Protocol)] = &[
    ("postgres", Protocol::Postgres),
    ("postgresql", Protocol::Postgres),
    ("mysql", Protocol::Mysql),
    ("mariadb", Protocol::Mysql),
];
const FORM: &str = "postgres://USER:PASSWORD@HOST:PORT/DB";

/// Why an upstream URL was refused. Messages never repeat the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "the upstream URL must start with postgres:// or mysql://, as in {FORM} \
         or mysql://USER:PASSWORD@HOST:PORT/DB"
    )]
    MissingScheme,
    #[error(
        "unsupported scheme \"{scheme}://\" in the upstream URL; \
         supported: postgres://, postgresql://, mysql://, mariadb://"
    )]
    UnsupportedScheme { scheme: String },
    #[error(
        "the mysql:// upstream URL names no database; write mysql://USER:PASSWORD@HOST:PORT/DB"
    )]
    MissingDatabase,
    #[error("the upstream URL has no user name; write {FORM}")]
    MissingUser,
    #[error("the upstream URL has no host; write {FORM}")]
    MissingHost,
    #[error("the upstream URL lists several hosts ({hosts}); churnstile connects to exactly one")]
    SeveralHosts { hosts: String },
    #[error(
        "the upstream URL's IPv6 host must be written [ADDRESS] or [ADDRESS]:PORT, e.g. [::1]:5432"
    )]
    BadIpv6Host,
    #[error("invalid port {port:?} in the upstream URL; use a number from 1 to 65535")]
    InvalidPort { port: String },
    #[error(
        "the {part} in the upstream URL has a bad percent escape; write %XX with two hex digits \
         that decode to UTF-8"
    )]
    BadPercentEncoding { part: &'static str },
    #[error("the upstream URL has a fragment ('#' after the database); remove it")]
    Fragment,
    #[error(
        "unsupported query parameter {name:?} in the upstream URL; supported: sslmode \
         (ssl-mode for mysql://) and sslrootcert (ssl-ca)"
    )]
    UnknownParameter { name: String },
    #[error(
        "invalid sslmode {value:?} in the upstream URL; use disable, prefer, require, verify-ca \
         or verify-full (MySQL's DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY too)"
    )]
    BadSslMode { value: String },
}

/// The parts of `postgres://USER:PASSWORD@HOST:PORT/DB`, percent-decoded.
#[derive(Debug, PartialEq)]
pub(super) struct UpstreamUrl {
    pub protocol: Protocol,
    pub user: String,
    pub password: Option<String>,
    /// IPv6 addresses without brackets; a path starting with '/' is a Unix
    /// socket directory (written `%2Ftmp` in the URL).
    pub host: String,
    pub port: u16,
    pub dbname: String,
    /// `sslmode` and `sslrootcert` from the query string.
    pub tls: ServerTls,
}

impl UpstreamUrl {
    pub(super) fn parse(url: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::MissingScheme)?;
        let scheme_chars = |c: char| c.is_ascii_alphanumeric() || "+-.".contains(c);
        if scheme.is_empty() || !scheme.chars().all(scheme_chars) {
            return Err(UrlError::MissingScheme);
        }
        let Some(&(_, protocol)) = SCHEMES
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(scheme))
        else {
            return Err(UrlError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            });
        };
        // The last '@' ends the user info, so a password may hold a raw '@',
        // '/', '?' or '#'.
        let (user_info, after_user_info) = rest.rsplit_once('@').ok_or(UrlError::MissingUser)?;
        let host_end = after_user_info
            .find(['/', '?', '#'])
            .unwrap_or(after_user_info.len());
        let (host_and_port, tail) = after_user_info.split_at(host_end);
        if tail.contains('#') {
            return Err(UrlError::Fragment);
        }
        let (tail, query) = tail.split_once('?').unwrap_or((tail, ""));
        let path = tail.strip_prefix('/').unwrap_or(tail);
        let tls = read_tls_parameters(query)?;

        let (user, password) = match user_info.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (user_info, None),
        };
        let user = percent_decode(user, "user name")?;
        if user.is_empty() {
            return Err(UrlError::MissingUser);
        }
        let password = password
            .map(|password| percent_decode(password, "password"))
            .transpose()?
            .filter(|password| !password.is_empty());
        let (host, port) = split_host_port(host_and_port, protocol.default_port())?;
        let dbname = percent_decode(path, "database name")?;
        if dbname.is_empty() && protocol == Protocol::Mysql {
            // MySQL has no database named after the user to fall back on.
            return Err(UrlError::MissingDatabase);
        }
        Ok(UpstreamUrl {
            protocol,
            dbname: if dbname.is_empty() {
                user.clone()
            } else {
                dbname
            },
            user,
            password,
            host,
            port,
            tls,
        })
    }
}

/// libpq's `sslmode` and `sslrootcert` (`system` is the system's trust
/// store), or their MySQL spellings `ssl-mode` and `ssl-ca`.
fn read_tls_parameters(query: &str) -> Result<ServerTls, UrlError> {
    let mut tls = ServerTls::default();
    for parameter in query.split('&').filter(|parameter| !parameter.is_empty()) {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let value = percent_decode(value, "query string")?;
        match name {
            "sslmode" | "ssl-mode" | "ssl_mode" => tls.sslmode = ssl_mode(&value)?,
            "sslrootcert" | "ssl-ca" | "ssl_ca" if value == "system" => tls.ca_file = None,
            "sslrootcert" | "ssl-ca" | "ssl_ca" => tls.ca_file = Some(value.into()),
            _ => {
                return Err(UrlError::UnknownParameter {
                    name: name.to_owned(),
                });
            }
        }
    }
    Ok(tls)
}

fn ssl_mode(value: &str) -> Result<ServerTlsMode, UrlError> {
    Ok(
        match value.to_ascii_lowercase().replace('_', "-").as_str() {
            "disable" | "disabled" => ServerTlsMode::Disable,
            "prefer" | "preferred" => ServerTlsMode::Prefer,
            "require" | "required" => ServerTlsMode::Require,
            "verify-ca" => ServerTlsMode::VerifyCa,
            "verify-full" | "verify-identity" => ServerTlsMode::VerifyFull,
            _ => {
                return Err(UrlError::BadSslMode {
                    value: value.to_owned(),
                });
            }
        },
    )
}

fn split_host_port(text: &str, default_port: u16) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(UrlError::BadIpv6Host)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(UrlError::BadIpv6Host)?),
        };
        (host.to_owned(), port)
    } else {
        if text.contains(',') {
            return Err(UrlError::SeveralHosts {
                hosts: text.to_owned(),
            });
        }
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        (percent_decode(host, "host")?, port)
    };
    if host.is_empty() {
        return Err(UrlError::MissingHost);
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&port| port != 0)
            .ok_or_else(|| UrlError::InvalidPort {
                port: port.to_owned(),
            })?,
    };
    Ok((host, port))
}

/// Decodes `%XX` escapes; `part` names the URL part for the error.
fn percent_decode(text: &str, part: &'static str) -> Result<String, UrlError> {
    let error = UrlError::BadPercentEncoding { part };
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        if byte == b'%' {
            let hex = after.get(..2).ok_or_else(|| error.clone())?;
            let hex = std::str::from_utf8(hex).map_err(|_| error.clone())?;
            bytes.push(u8::from_str_radix(hex, 16).map_err(|_| error.clone())?);
            rest = &after[2..];
        } else {
            bytes.push(byte);
            rest = after;
        }
    }
    String::from_utf8(bytes).map_err(|_| error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<UpstreamUrl, UrlError> {
        UpstreamUrl::parse(url)
    }

    fn url(user: &str, password: Option<&str>, host: &str, port: u16, dbname: &str) -> UpstreamUrl {
        UpstreamUrl {
            protocol: Protocol::Postgres,
            user: user.to_owned(),
            password: password.map(str::to_owned),
            host: host.to_owned(),
            port,
            dbname: dbname.to_owned(),
            tls: ServerTls::default(),
        }
    }

    #[test]
    fn full_url() {
        assert_eq!(
            parse("postgres://alice:secret@db.internal:6543/app"),
            Ok(url("alice", Some("secret"), "db.internal", 6543, "app"))
        );
        assert_eq!(
            parse("postgresql://alice:secret@10.0.0.5/app"),
            Ok(url("alice", Some("secret"), "10.0.0.5", 5432, "app"))
        );
        assert_eq!(
            parse("POSTGRES://alice@h"),
            Ok(url("alice", None, "h", 5432, "alice"))
        );
    }

    #[test]
    fn mysql_url_defaults_to_port_3306_and_needs_a_database() {
        let mysql = |port| UpstreamUrl {
            protocol: Protocol::Mysql,
            ..url("root", None, "127.0.0.1", port, "shop")
        };
        assert_eq!(parse("mysql://root@127.0.0.1/shop"), Ok(mysql(3306)));
        assert_eq!(
            parse("mariadb://root:@127.0.0.1:3310/shop"),
            Ok(mysql(3310))
        );
        assert_eq!(
            parse("mysql://root@127.0.0.1"),
            Err(UrlError::MissingDatabase)
        );
    }

    #[test]
    fn defaults_port_and_database() {
        assert_eq!(
            parse("postgres://bob:pw@localhost"),
            Ok(url("bob", Some("pw"), "localhost", 5432, "bob"))
        );
        assert_eq!(
            parse("postgres://bob:pw@localhost/"),
            Ok(url("bob", Some("pw"), "localhost", 5432, "bob"))
        );
    }

    #[test]
    fn ipv6_hosts_lose_their_brackets() {
        assert_eq!(
            parse("postgres://u:p@[::1]:5433/d"),
            Ok(url("u", Some("p"), "::1", 5433, "d"))
        );
        assert_eq!(
            parse("postgres://u:p@[fe80::1]/d"),
            Ok(url("u", Some("p"), "fe80::1", 5432, "d"))
        );
        assert_eq!(parse("postgres://u@[::1/d"), Err(UrlError::BadIpv6Host));
        assert_eq!(
            parse("postgres://u@[::1]5432/d"),
            Err(UrlError::BadIpv6Host)
        );
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(
            parse("postgres://us%40er:p%3Ass%2F%25w@h/my%20db"),
            Ok(url("us@er", Some("p:ss/%w"), "h", 5432, "my db"))
        );
        assert_eq!(
            parse("postgres://u@%2Fvar%2Frun%2Fpostgresql/d"),
            Ok(url("u", None, "/var/run/postgresql", 5432, "d"))
        );
        assert_eq!(
            parse("postgres://u:%zz@h/d"),
            Err(UrlError::BadPercentEncoding { part: "password" })
        );
        assert_eq!(
            parse("postgres://u@h/d%2"),
            Err(UrlError::BadPercentEncoding {
                part: "database name"
            })
        );
        assert_eq!(
            parse("postgres://u@h/%ff"),
            Err(UrlError::BadPercentEncoding {
                part: "database name"
            })
        );
    }

    #[test]
    fn raw_at_sign_in_password_is_kept() {
        assert_eq!(
            parse("postgres://u:p@ss@h/d"),
            Ok(url("u", Some("p@ss"), "h", 5432, "d"))
        );
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        assert_eq!(
            parse("redis://u:p@h/d"),
            Err(UrlError::UnsupportedScheme {
                scheme: "redis".to_owned()
            })
        );
        assert_eq!(parse("u:p@h/d"), Err(UrlError::MissingScheme));
        assert_eq!(parse("://u@h/d"), Err(UrlError::MissingScheme));
        assert_eq!(parse("postgres://h/d"), Err(UrlError::MissingUser));
        assert_eq!(parse("postgres://:p@h/d"), Err(UrlError::MissingUser));
        assert_eq!(parse("postgres://u@/d"), Err(UrlError::MissingHost));
        assert_eq!(parse("postgres://u@:5432/d"), Err(UrlError::MissingHost));
        assert_eq!(parse("postgres://u@h/d#top"), Err(UrlError::Fragment));
        assert_eq!(
            parse("postgres://u@h?x=1"),
            Err(UrlError::UnknownParameter {
                name: "x".to_owned()
            })
        );
        assert_eq!(
            parse("postgres://u@h/d?sslmode=allow"),
            Err(UrlError::BadSslMode {
                value: "allow".to_owned()
            })
        );
        assert_eq!(
            parse("postgres://u@a,b/d"),
            Err(UrlError::SeveralHosts {
                hosts: "a,b".to_owned()
            })
        );
        for port in ["0", "65536", "x", ""] {
            assert_eq!(
                parse(&format!("postgres://u@h:{port}/d")),
                Err(UrlError::InvalidPort {
                    port: port.to_owned()
                })
            );
        }
    }

    #[test]
    fn error_messages_name_the_supported_schemes_and_hide_passwords() {
        let message = parse("redis://u:hunter2@h/d").unwrap_err().to_string();
        assert!(
            message.contains("postgres://, postgresql://, mysql://, mariadb://"),
            "{message}"
        );
        let message = parse("postgres://u:hunter2%@h/d").unwrap_err().to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn sslmode_and_sslrootcert_set_the_upstream_tls() {
        let full = parse(
            "postgres://u:p@db.example.com/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(full.tls.sslmode, ServerTlsMode::VerifyFull);
        assert_eq!(
            full.tls.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(full.dbname, "app");
        let parsed = parse("postgres://u@h?sslmode=require&sslrootcert=system").unwrap();
        assert_eq!(
            (parsed.tls.sslmode, parsed.tls.ca_file),
            (ServerTlsMode::Require, None)
        );
        assert_eq!(parsed.dbname, "u");
        let mysql = parse("mysql://u@h/shop?ssl-mode=VERIFY_IDENTITY&ssl-ca=ca.pem").unwrap();
        assert_eq!(mysql.tls.sslmode, ServerTlsMode::VerifyFull);
        assert_eq!(mysql.dbname, "shop");
        assert_eq!(
            parse("mysql://u@h/shop?ssl-mode=DISABLED")
                .unwrap()
                .tls
                .sslmode,
            ServerTlsMode::Disable
        );
        assert_eq!(parse("postgres://u@h/d").unwrap().tls, ServerTls::default());
    }
}

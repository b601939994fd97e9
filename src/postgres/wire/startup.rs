//! What a client's StartupMessage means, sans-IO: the protocol version it
//! asks for, whether the version or `_pq_.` options need a
//! NegotiateProtocolVersion answer, and the user, database and parameters
//! it logs in with, or the refusal PostgreSQL would give.

use bytes::BytesMut;

use super::messages::{self, sqlstate};

/// What a new connection turned out to be.
#[derive(Debug)]
pub enum Opening {
    Startup(Startup),
    Cancel { process_id: i32, secret_key: i32 },
}

/// A client's StartupMessage.
#[derive(Debug, Clone)]
pub struct Startup {
    pub user: String,
    pub database: String,
    pub params: Vec<(String, String)>,
}

/// A startup packet churnstile will not serve: the SQLSTATE and message the
/// client gets with its FATAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::postgres) struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Only protocol 3 is spoken; any 3.x is served as 3.0 after negotiation.
pub(in crate::postgres) fn check_version(major: u16, minor: u16) -> Result<(), Refusal> {
    if major == 3 {
        return Ok(());
    }
    Err(refused(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0"),
    ))
}

/// The NegotiateProtocolVersion message owed to a client asking for a newer
/// minor version or sending `_pq_.` protocol options, if any.
pub(in crate::postgres) fn negotiation(
    minor: u16,
    params: &[(String, String)],
) -> Option<BytesMut> {
    let unrecognised: Vec<&str> = params
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| name.starts_with("_pq_."))
        .collect();
    if minor == 0 && unrecognised.is_empty() {
        return None;
    }
    let mut out = BytesMut::new();
    messages::negotiate_protocol_version(&mut out, 0, &unrecognised);
    Some(out)
}

/// The login a StartupMessage's parameters ask for: `user` is required,
/// `database` defaults to it, replication connections are refused.
pub(in crate::postgres) fn startup_from(params: Vec<(String, String)>) -> Result<Startup, Refusal> {
    if params.iter().any(|(name, value)| {
        name == "replication" && value != "false" && value != "0" && value != "off"
    }) {
        return Err(refused(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported through churnstile",
        ));
    }
    let value = |key: &str| {
        params
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, v)| v.clone())
    };
    let user = value("user")
        .filter(|user| !user.is_empty())
        .ok_or_else(|| {
            refused(
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?;
    let database = value("database")
        .filter(|db| !db.is_empty())
        .unwrap_or_else(|| user.clone());
    Ok(Startup {
        user,
        database,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn only_protocol_3_is_spoken() {
        assert!(check_version(3, 0).is_ok());
        assert!(check_version(3, 2).is_ok());
        let refusal = check_version(2, 0).unwrap_err();
        assert_eq!(refusal.code, sqlstate::FEATURE_NOT_SUPPORTED);
    }

    #[test]
    fn a_newer_minor_version_or_protocol_options_get_a_negotiation() {
        assert!(negotiation(0, &params(&[("user", "u")])).is_none());
        let newer = negotiation(2, &params(&[("user", "u")])).expect("negotiation");
        assert_eq!(newer[0], b'v');
        assert!(negotiation(0, &params(&[("_pq_.x", "1")])).is_some());
    }

    #[test]
    fn the_database_defaults_to_the_user() {
        let startup = startup_from(params(&[("user", "alice")])).expect("startup");
        assert_eq!(
            (startup.user.as_str(), startup.database.as_str()),
            ("alice", "alice")
        );
        let startup = startup_from(params(&[("user", "alice"), ("database", "app")])).unwrap();
        assert_eq!(startup.database, "app");
    }

    #[test]
    fn a_missing_user_and_replication_are_refused() {
        let refusal = startup_from(params(&[("database", "app")])).unwrap_err();
        assert_eq!(refusal.code, sqlstate::INVALID_AUTHORIZATION);
        let refusal = startup_from(params(&[("user", "u"), ("replication", "true")])).unwrap_err();
        assert_eq!(refusal.code, sqlstate::FEATURE_NOT_SUPPORTED);
        assert!(startup_from(params(&[("user", "u"), ("replication", "off")])).is_ok());
    }
}

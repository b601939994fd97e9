//! Client authentication over the wire: the AuthenticationMD5Password or
//! SASL exchange with the client, checked against the secret in `[users]`.
//! The cryptography lives in `auth/`; this file moves the messages.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::auth::{
    ScramError, ScramExchange, mock_md5_secret, mock_scram_verifier, new_md5_salt,
    verify_md5_response,
};
use super::wire::codec::{self, Message};
use super::wire::messages::{self, sqlstate};
use crate::config::{AuthType, ClientSecret, ScramVerifier};
use crate::stream::Stream;

/// Longest password or SASL message a client may send.
const MAX_AUTH_MESSAGE: usize = 8 * 1024;

/// How a client must prove who it is.
pub(super) enum Challenge<'a> {
    Trust,
    Md5(&'a ClientSecret),
    Scram(&'a ScramVerifier),
}

/// Picks the method as PgBouncer does: `md5` falls back to SCRAM when only
/// a SCRAM verifier is stored; `scram-sha-256` uses the stored or the
/// derived verifier (`derived` is computed once per user at startup).
pub(super) fn challenge_for<'a>(
    auth_type: AuthType,
    secret: Option<&'a ClientSecret>,
    derived: Option<&'a ScramVerifier>,
) -> Option<Challenge<'a>> {
    match (auth_type, secret) {
        (AuthType::Trust, _) => Some(Challenge::Trust),
        (_, Some(ClientSecret::Scram(verifier))) => Some(Challenge::Scram(verifier)),
        (AuthType::Md5, Some(secret)) => Some(Challenge::Md5(secret)),
        (AuthType::ScramSha256, Some(ClientSecret::Plain(_))) => derived.map(Challenge::Scram),
        _ => None,
    }
}

/// What a user churnstile has no password for (unknown, or in `[users]`
/// without one) is challenged against: the exchange a known user gets, so
/// it fails the same way, with 28P01.
pub(super) enum MockSecret {
    Md5(ClientSecret),
    Scram(ScramVerifier),
}

impl MockSecret {
    pub(super) fn for_user(auth_type: AuthType, user: &str) -> MockSecret {
        match auth_type {
            AuthType::ScramSha256 => MockSecret::Scram(mock_scram_verifier(user)),
            AuthType::Md5 | AuthType::Trust => MockSecret::Md5(mock_md5_secret(user)),
        }
    }

    pub(super) fn challenge(&self) -> Challenge<'_> {
        match self {
            MockSecret::Md5(secret) => Challenge::Md5(secret),
            MockSecret::Scram(verifier) => Challenge::Scram(verifier),
        }
    }
}

/// Why a login failed, with the SQLSTATE the client gets.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoginError {
    #[error("password authentication failed for user \"{0}\"")]
    WrongPassword(String),
    #[error("{0}")]
    Protocol(String),
    #[error("client closed the connection during authentication")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl LoginError {
    pub(super) fn sqlstate(&self) -> &'static str {
        match self {
            LoginError::WrongPassword(_) => sqlstate::INVALID_PASSWORD,
            _ => sqlstate::PROTOCOL_VIOLATION,
        }
    }
}

impl From<codec::ProtocolError> for LoginError {
    fn from(error: codec::ProtocolError) -> Self {
        LoginError::Protocol(error.to_string())
    }
}

/// Runs the challenge; on success the client has been sent AuthenticationOk.
pub(super) async fn authenticate(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    challenge: Challenge<'_>,
) -> Result<(), LoginError> {
    let mut out = BytesMut::new();
    match challenge {
        Challenge::Trust => {}
        Challenge::Md5(secret) => {
            let salt = new_md5_salt();
            messages::authentication_md5(&mut out, salt);
            stream.write_all(&out).await?;
            let response = read_password_message(stream, buf).await?;
            let password = response.body.strip_suffix(b"\0").unwrap_or(&response.body);
            if !verify_md5_response(secret, user, salt, password) {
                return Err(LoginError::WrongPassword(user.to_owned()));
            }
        }
        Challenge::Scram(verifier) => scram(stream, buf, user, verifier).await?,
    }
    out.clear();
    messages::authentication_ok(&mut out);
    stream.write_all(&out).await?;
    Ok(())
}

async fn scram(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    verifier: &ScramVerifier,
) -> Result<(), LoginError> {
    let mut out = BytesMut::new();
    messages::authentication_sasl(&mut out);
    stream.write_all(&out).await?;

    let initial = read_password_message(stream, buf).await?;
    let (mechanism, data) = parse_sasl_initial(&initial.body)?;
    let mut exchange = ScramExchange::new(verifier.clone());
    let server_first = exchange
        .client_first(&mechanism, &data)
        .map_err(|e| scram_error(e, user))?;
    out.clear();
    messages::authentication_sasl_continue(&mut out, &server_first);
    stream.write_all(&out).await?;

    let response = read_password_message(stream, buf).await?;
    let server_final = exchange
        .client_final(&response.body)
        .map_err(|e| scram_error(e, user))?;
    out.clear();
    messages::authentication_sasl_final(&mut out, &server_final);
    stream.write_all(&out).await?;
    Ok(())
}

fn scram_error(error: ScramError, user: &str) -> LoginError {
    match error {
        ScramError::WrongPassword => LoginError::WrongPassword(user.to_owned()),
        other => LoginError::Protocol(other.to_string()),
    }
}

/// SASLInitialResponse: mechanism name, then a length-prefixed payload.
fn parse_sasl_initial(body: &[u8]) -> Result<(String, Vec<u8>), LoginError> {
    let malformed = || LoginError::Protocol("malformed SASLInitialResponse".into());
    let mut rest = body;
    let mechanism = codec::take_cstr(&mut rest)
        .ok_or_else(malformed)?
        .to_owned();
    if rest.len() < 4 {
        return Err(malformed());
    }
    let len = rest.get_i32();
    let data = match usize::try_from(len) {
        Ok(len) if len == rest.len() => rest.to_vec(),
        _ if len == -1 && rest.is_empty() => Vec::new(),
        _ => return Err(malformed()),
    };
    Ok((mechanism, data))
}

/// Reads the client's next message, which must be a password-type message.
async fn read_password_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<Message, LoginError> {
    let message = loop {
        if let Some(message) = codec::decode_message(buf, MAX_AUTH_MESSAGE)? {
            break message;
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(LoginError::Closed);
        }
    };
    if message.tag != b'p' {
        return Err(LoginError::Protocol(format!(
            "expected password response, got message type '{}'",
            message.tag as char
        )));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_initial_response_is_parsed_strictly() {
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&3i32.to_be_bytes());
        body.extend_from_slice(b"abc");
        assert_eq!(
            parse_sasl_initial(&body).unwrap(),
            ("SCRAM-SHA-256".into(), b"abc".to_vec())
        );
        body.push(b'x');
        assert!(parse_sasl_initial(&body).is_err());
        assert!(parse_sasl_initial(b"SCRAM").is_err());
    }

    #[test]
    fn md5_falls_back_to_scram_for_scram_verifiers() {
        let verifier = crate::postgres::auth::scram_verifier_from_password("pw");
        let scram = ClientSecret::Scram(verifier.clone());
        assert!(matches!(
            challenge_for(AuthType::Md5, Some(&scram), None),
            Some(Challenge::Scram(_))
        ));
        let plain = ClientSecret::Plain("pw".into());
        assert!(matches!(
            challenge_for(AuthType::Md5, Some(&plain), None),
            Some(Challenge::Md5(_))
        ));
        assert!(matches!(
            challenge_for(AuthType::ScramSha256, Some(&plain), Some(&verifier)),
            Some(Challenge::Scram(_))
        ));
        assert!(challenge_for(AuthType::Md5, None, None).is_none());
        assert!(matches!(
            challenge_for(AuthType::Trust, None, None),
            Some(Challenge::Trust)
        ));
    }
}

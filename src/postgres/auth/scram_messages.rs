//! Parsing of the two messages a SCRAM client sends (RFC 5802 section 7),
//! with PostgreSQL's rules: no authorization identity, no mandatory
//! extensions, and the username attribute read but ignored.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::scram_error::ScramError;

/// The gs2 channel-binding flag of client-first-message. `p=...` never gets
/// this far: churnstile offers no SCRAM-SHA-256-PLUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gs2Flag {
    /// `n`: the client does not support channel binding.
    ClientCannotBind,
    /// `y`: the client could bind but believes the server cannot.
    ServerCannotBind,
}

impl Gs2Flag {
    /// The `c=` value client-final-message must echo: base64 of the gs2
    /// header `n,,` or `y,,`.
    pub(super) fn channel_binding_echo(self) -> &'static [u8] {
        match self {
            Gs2Flag::ClientCannotBind => b"biws",
            Gs2Flag::ServerCannotBind => b"eSws",
        }
    }
}

#[derive(Debug)]
pub(super) struct ClientFirst<'a> {
    pub(super) gs2_flag: Gs2Flag,
    /// client-first-message-bare, which starts the AuthMessage.
    pub(super) bare: &'a [u8],
    pub(super) nonce: &'a [u8],
}

#[derive(Debug)]
pub(super) struct ClientFinal<'a> {
    /// The `c=` value, still base64.
    pub(super) channel_binding: &'a [u8],
    pub(super) nonce: &'a [u8],
    /// client-final-message-without-proof, which ends the AuthMessage.
    pub(super) without_proof: &'a [u8],
    pub(super) proof: [u8; 32],
}

pub(super) fn parse_client_first(data: &[u8]) -> Result<ClientFirst<'_>, ScramError> {
    let (flag, rest) =
        split_field(data).ok_or_else(|| malformed("client-first-message has no gs2 header"))?;
    let gs2_flag = match flag {
        b"n" => Gs2Flag::ClientCannotBind,
        b"y" => Gs2Flag::ServerCannotBind,
        _ if flag.starts_with(b"p=") => {
            return Err(malformed(
                "client requested channel binding (p=...), but SCRAM-SHA-256-PLUS is not offered",
            ));
        }
        _ => return Err(malformed("gs2 channel-binding flag must be n, y or p=...")),
    };
    let (authzid, bare) = split_field(rest)
        .ok_or_else(|| malformed("gs2 header of client-first-message is incomplete"))?;
    if !authzid.is_empty() {
        return Err(malformed("authorization identity (a=...) is not supported"));
    }
    if bare.starts_with(b"m=") {
        return Err(malformed(
            "client requires an unsupported SCRAM extension (m=...)",
        ));
    }
    let mut attributes = bare.split(|&byte| byte == b',');
    // PostgreSQL takes the user from the startup packet; this one is ignored.
    attribute_value(attributes.next(), b'n', "client-first-message")?;
    let nonce = attribute_value(attributes.next(), b'r', "client-first-message")?;
    if nonce.is_empty() || !nonce.iter().all(|&byte| is_printable(byte)) {
        return Err(malformed("client nonce must be non-empty printable ASCII"));
    }
    check_extensions(attributes, "client-first-message")?;
    Ok(ClientFirst {
        gs2_flag,
        bare,
        nonce,
    })
}

pub(super) fn parse_client_final(data: &[u8]) -> Result<ClientFinal<'_>, ScramError> {
    let proof_start = data
        .iter()
        .rposition(|&byte| byte == b',')
        .ok_or_else(|| malformed("client-final-message has too few attributes"))?;
    let without_proof = &data[..proof_start];
    let proof = attribute_value(Some(&data[proof_start + 1..]), b'p', "client-final-message")?;
    let proof = STANDARD
        .decode(proof)
        .map_err(|error| malformed(&format!("client proof is not valid base64: {error}")))?;
    let proof = <[u8; 32]>::try_from(proof.as_slice())
        .map_err(|_| malformed("client proof must decode to 32 bytes"))?;

    let mut attributes = without_proof.split(|&byte| byte == b',');
    let channel_binding = attribute_value(attributes.next(), b'c', "client-final-message")?;
    let nonce = attribute_value(attributes.next(), b'r', "client-final-message")?;
    if attributes
        .clone()
        .any(|attribute| attribute.starts_with(b"p="))
    {
        return Err(malformed(
            "client-final-message has attributes after its proof p=",
        ));
    }
    check_extensions(attributes, "client-final-message")?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

/// Splits at the first comma: the field before it and the rest after it.
fn split_field(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let comma = input.iter().position(|&byte| byte == b',')?;
    Some((&input[..comma], &input[comma + 1..]))
}

/// The value of `name=value`, which must be there and be named `name`.
fn attribute_value<'a>(
    attribute: Option<&'a [u8]>,
    name: u8,
    message: &str,
) -> Result<&'a [u8], ScramError> {
    let name_char = char::from(name);
    match attribute {
        Some([found, b'=', value @ ..]) if *found == name => Ok(value),
        _ => Err(malformed(&format!(
            "{message} is missing attribute {name_char}= where it was expected"
        ))),
    }
}

/// Optional extensions may follow the mandatory attributes; PostgreSQL
/// skips them but still insists each looks like `x=value`.
fn check_extensions<'a>(
    mut attributes: impl Iterator<Item = &'a [u8]>,
    message: &str,
) -> Result<(), ScramError> {
    let all_well_formed = attributes
        .all(|attribute| matches!(attribute, [name, b'=', ..] if name.is_ascii_alphabetic()));
    if all_well_formed {
        Ok(())
    } else {
        Err(malformed(&format!("{message} has a malformed attribute")))
    }
}

/// RFC 5802's `printable`: visible ASCII except the comma.
fn is_printable(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte) && byte != b','
}

fn malformed(what: &str) -> ScramError {
    ScramError::Malformed(what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_keeps_bare_message_and_nonce() {
        let parsed = parse_client_first(b"n,,n=ignored,r=abc~123,x=ext").expect("valid");
        assert_eq!(parsed.gs2_flag, Gs2Flag::ClientCannotBind);
        assert_eq!(parsed.bare, b"n=ignored,r=abc~123,x=ext");
        assert_eq!(parsed.nonce, b"abc~123");
    }

    #[test]
    fn client_first_with_y_flag_expects_its_own_echo() {
        let parsed = parse_client_first(b"y,,n=,r=abc").expect("valid");
        assert_eq!(parsed.gs2_flag, Gs2Flag::ServerCannotBind);
        assert_eq!(parsed.gs2_flag.channel_binding_echo(), b"eSws");
    }

    #[test]
    fn client_final_splits_off_the_proof() {
        let proof = STANDARD.encode([7u8; 32]);
        let message = format!("c=biws,r=nonce,p={proof}");
        let parsed = parse_client_final(message.as_bytes()).expect("valid");
        assert_eq!(parsed.channel_binding, b"biws");
        assert_eq!(parsed.nonce, b"nonce");
        assert_eq!(parsed.without_proof, b"c=biws,r=nonce");
        assert_eq!(parsed.proof, [7u8; 32]);
    }

    #[test]
    fn malformed_client_first_messages_say_what_is_wrong() {
        let cases: [(&[u8], &str); 10] = [
            (b"", "no gs2 header"),
            (b"\xff\x00garbage", "no gs2 header"),
            (b"q,,n=,r=abc", "flag must be"),
            (b"p=tls-server-end-point,,n=,r=abc", "SCRAM-SHA-256-PLUS"),
            (b"n,a=bob,n=,r=abc", "authorization identity"),
            (b"n,", "incomplete"),
            (b"n,,m=ext,n=,r=abc", "unsupported SCRAM extension"),
            (b"n,,r=abc", "attribute n="),
            (b"n,,n=,r=a\x01c", "printable"),
            (b"n,,n=,r=abc,=x", "malformed attribute"),
        ];
        for (message, expected) in cases {
            match parse_client_first(message) {
                Err(ScramError::Malformed(what)) => assert!(
                    what.contains(expected),
                    "{message:?}: {what:?} should mention {expected:?}"
                ),
                other => panic!("{message:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_client_final_messages_say_what_is_wrong() {
        let short_proof = format!("c=biws,r=abc,p={}", STANDARD.encode([1u8; 16]));
        let cases: [(&[u8], &str); 7] = [
            (b"garbage", "too few attributes"),
            (b"c=biws,r=abc", "attribute p="),
            (b"c=biws,r=abc,p=not*base64", "not valid base64"),
            (short_proof.as_bytes(), "32 bytes"),
            (b"r=abc,c=biws,p=AAAA", "32 bytes"),
            (b"\xff,p=", "32 bytes"),
            (b",,,,", "attribute p="),
        ];
        for (message, expected) in cases {
            match parse_client_final(message) {
                Err(ScramError::Malformed(what)) => assert!(
                    what.contains(expected),
                    "{message:?}: {what:?} should mention {expected:?}"
                ),
                other => panic!("{message:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn client_final_attributes_must_come_in_order() {
        let proof = STANDARD.encode([0u8; 32]);
        for message in [
            format!("r=abc,c=biws,p={proof}"),
            format!("c=biws,r=abc,p={proof},p={proof}"),
            format!("c=biws,p={proof},p={proof}"),
            format!("c=biws,r=abc,1=x,p={proof}"),
        ] {
            assert!(
                matches!(
                    parse_client_final(message.as_bytes()),
                    Err(ScramError::Malformed(_))
                ),
                "{message}"
            );
        }
    }
}

//! Parsing a client secret in one of the forms PostgreSQL stores in
//! `pg_authid.rolpassword` (plaintext, `md5…` or a SCRAM-SHA-256 verifier)
//! or MySQL in `mysql.user` for mysql_native_password (`*` + 40 hex digits).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::types::{ClientSecret, ScramVerifier};

const MD5_PREFIX: &str = "md5";
const MD5_HEX_DIGITS: usize = 32;
const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";
const SCRAM_KEY_LEN: usize = 32;
const MYSQL_NATIVE_PREFIX: &str = "*";
const MYSQL_NATIVE_HEX_DIGITS: usize = 40;

/// Classifies and decodes a secret.
///
/// - `md5` + 32 hex digits is an md5 secret. `md5` followed only by hex
///   digits of another length, or by 32 characters that are not all hex, is
///   rejected as a damaged md5 secret rather than taken as a password.
/// - Text starting with `SCRAM-SHA-256$` must be a complete verifier,
///   `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` in base64.
/// - `*` + 40 hex digits is a mysql_native_password hash.
/// - Anything else is a plaintext password.
///
/// The error says what is malformed; it never repeats the secret.
pub(super) fn parse_client_secret(text: &str) -> Result<ClientSecret, String> {
    if let Some(verifier) = text.strip_prefix(SCRAM_PREFIX) {
        return parse_scram(verifier).map(ClientSecret::Scram);
    }
    if let Some(digits) = text.strip_prefix(MD5_PREFIX) {
        let all_hex = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit());
        if all_hex || digits.chars().count() == MD5_HEX_DIGITS {
            return parse_md5(digits).map(ClientSecret::Md5);
        }
    }
    if let Some(digits) = text.strip_prefix(MYSQL_NATIVE_PREFIX)
        && digits.len() == MYSQL_NATIVE_HEX_DIGITS
        && let Some(hash) = decode_hex::<20>(digits)
    {
        return Ok(ClientSecret::MysqlNative(hash));
    }
    Ok(ClientSecret::Plain(text.to_owned()))
}

/// `N` bytes from `2 * N` hex digits of either case.
fn decode_hex<const N: usize>(digits: &str) -> Option<[u8; N]> {
    let digits = digits.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = hex_value(pair[0])? << 4 | hex_value(pair[1])?;
    }
    Some(bytes)
}

fn parse_md5(digits: &str) -> Result<[u8; 16], String> {
    if digits.len() != MD5_HEX_DIGITS {
        return Err(format!(
            "md5 secret must be \"md5\" followed by {MD5_HEX_DIGITS} hex digits, found {}",
            digits.len()
        ));
    }
    let mut hash = [0u8; 16];
    for (i, pair) in digits.as_bytes().chunks_exact(2).enumerate() {
        let (Some(high), Some(low)) = (hex_value(pair[0]), hex_value(pair[1])) else {
            return Err(format!(
                "md5 secret must be \"md5\" followed by {MD5_HEX_DIGITS} hex digits; \
                 character {} or {} after \"md5\" is not a hex digit",
                2 * i + 1,
                2 * i + 2
            ));
        };
        hash[i] = high << 4 | low;
    }
    Ok(hash)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

fn parse_scram(verifier: &str) -> Result<ScramVerifier, String> {
    let expected = "SCRAM-SHA-256 secret must look like \
                    SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>";
    let (iterations_and_salt, keys) = verifier
        .split_once('$')
        .ok_or_else(|| format!("{expected}; the '$' before the keys is missing"))?;
    let (iterations, salt) = iterations_and_salt
        .split_once(':')
        .ok_or_else(|| format!("{expected}; the ':' between iterations and salt is missing"))?;
    let (stored_key, server_key) = keys
        .split_once(':')
        .ok_or_else(|| format!("{expected}; the ':' between StoredKey and ServerKey is missing"))?;
    let iterations = iterations
        .parse::<u32>()
        .ok()
        .filter(|&count| count > 0)
        .ok_or_else(|| {
            format!("SCRAM-SHA-256 secret: iteration count must be a positive integer, found {iterations:?}")
        })?;
    let salt = STANDARD
        .decode(salt)
        .ok()
        .filter(|salt| !salt.is_empty())
        .ok_or("SCRAM-SHA-256 secret: salt is not valid non-empty base64")?;
    Ok(ScramVerifier {
        iterations,
        salt,
        stored_key: decode_key("StoredKey", stored_key)?,
        server_key: decode_key("ServerKey", server_key)?,
    })
}

fn decode_key(name: &str, text: &str) -> Result<[u8; SCRAM_KEY_LEN], String> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|_| format!("SCRAM-SHA-256 secret: {name} is not valid base64"))?;
    <[u8; SCRAM_KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "SCRAM-SHA-256 secret: {name} must decode to {SCRAM_KEY_LEN} bytes, found {}",
            bytes.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The verifier PostgreSQL computes for password "postgres" with this salt.
    const SCRAM: &str = "SCRAM-SHA-256$4096:hYuD3W3Nco1mMl3P1bIAwQ==$\
                         q43JaBRBDun/Fe1VuVuzEgdIX7/mjlrrHoe8aQ/hcQc=:\
                         COF+HSwDJFDUmTXzNj7xZQHCwJc59jRRQXkJu1tpvZI=";

    #[test]
    fn plain_text_is_a_password() {
        assert_eq!(
            parse_client_secret("secret").unwrap(),
            ClientSecret::Plain("secret".to_owned())
        );
        assert_eq!(
            parse_client_secret("md5 is weak").unwrap(),
            ClientSecret::Plain("md5 is weak".to_owned())
        );
        assert_eq!(
            parse_client_secret("").unwrap(),
            ClientSecret::Plain(String::new())
        );
    }

    #[test]
    fn md5_secret_decodes_to_16_bytes() {
        let secret = parse_client_secret("md53175bce1d3201d16594cebf9d7eb3f9d").unwrap();
        let ClientSecret::Md5(hash) = secret else {
            panic!("expected md5, got {secret:?}");
        };
        assert_eq!(hash[0], 0x31);
        assert_eq!(hash[15], 0x9d);
        assert!(matches!(
            parse_client_secret("md53175BCE1D3201D16594CEBF9D7EB3F9D"),
            Ok(ClientSecret::Md5(_))
        ));
    }

    #[test]
    fn mysql_native_hash_decodes_to_20_bytes() {
        // SELECT PASSWORD('password') on MariaDB.
        let secret = parse_client_secret("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19").unwrap();
        let ClientSecret::MysqlNative(hash) = secret else {
            panic!("expected a mysql_native_password hash, got {secret:?}");
        };
        assert_eq!((hash[0], hash[19]), (0x24, 0x19));
        for password in [
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E1",
            "*not hex at all",
        ] {
            assert_eq!(
                parse_client_secret(password).unwrap(),
                ClientSecret::Plain(password.to_owned())
            );
        }
    }

    #[test]
    fn damaged_md5_secret_says_what_is_wrong() {
        let short = parse_client_secret("md53175bce1d3201d16594cebf9d7eb3f9").unwrap_err();
        assert!(short.contains("found 31"), "{short}");
        let bad_digit = parse_client_secret("md53175bce1d3201d16594cebf9d7eb3fzz").unwrap_err();
        assert!(bad_digit.contains("character 31 or 32"), "{bad_digit}");
    }

    #[test]
    fn scram_verifier_decodes() {
        let ClientSecret::Scram(verifier) = parse_client_secret(SCRAM).unwrap() else {
            panic!("expected a SCRAM verifier");
        };
        assert_eq!(verifier.iterations, 4096);
        assert_eq!(verifier.salt.len(), 16);
        assert_eq!(verifier.stored_key[0], 0xab);
        assert_eq!(verifier.server_key[0], 0x08);
    }

    #[test]
    fn malformed_scram_verifiers_say_what_is_wrong() {
        let cases = [
            ("SCRAM-SHA-256$4096:c2FsdA==", "'$' before the keys"),
            (
                "SCRAM-SHA-256$4096c2FsdA==$a:b",
                "between iterations and salt",
            ),
            (
                "SCRAM-SHA-256$4096:c2FsdA==$ab",
                "between StoredKey and ServerKey",
            ),
            ("SCRAM-SHA-256$0:c2FsdA==$a:b", "iteration count"),
            ("SCRAM-SHA-256$x:c2FsdA==$a:b", "iteration count"),
            ("SCRAM-SHA-256$4096:!!$a:b", "salt"),
            (
                "SCRAM-SHA-256$4096:c2FsdA==$!!:b",
                "StoredKey is not valid base64",
            ),
            (
                "SCRAM-SHA-256$4096:c2FsdA==$c2FsdA==:b",
                "StoredKey must decode to 32 bytes, found 4",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_client_secret(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        let server_key = SCRAM.replace("COF+HSwDJFDUmTXzNj7xZQHCwJc59jRRQXkJu1tpvZI=", "c2FsdA==");
        let error = parse_client_secret(&server_key).unwrap_err();
        assert!(
            error.contains("ServerKey must decode to 32 bytes"),
            "{error}"
        );
    }
}

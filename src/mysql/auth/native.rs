//! `mysql_native_password`: the SHA-1 scramble a client answers the nonce
//! with, and the server's check of that answer against the double SHA-1
//! hash `mysql.user` keeps, so a proxy can verify clients without ever
//! holding their plain passwords.
//!
//! A client with an empty password sends an empty auth response instead of
//! a scramble; callers building a response do the same.

use sha1::{Digest, Sha1};

use super::crypto::{constant_time_eq, xor_repeating};
use super::nonce::significant;

/// Length of the scramble and of the stored hash.
const HASH_LEN: usize = 20;

/// The client's answer: SHA1(pw) XOR SHA1(nonce[..20] + SHA1(SHA1(pw))).
/// An empty password is answered with an empty response, not with this.
pub fn scramble(password: &[u8], nonce: &[u8]) -> [u8; 20] {
    let mut response: [u8; HASH_LEN] = Sha1::digest(password).into();
    let mask = nonce_mask(&stored_hash(password), nonce);
    xor_repeating(&mut response, &mask);
    response
}

/// SHA1(SHA1(pw)), what mysql.user keeps.
pub fn stored_hash(password: &[u8]) -> [u8; 20] {
    Sha1::digest(Sha1::digest(password)).into()
}

/// Parses the stored hash as `SHOW CREATE USER` and `PASSWORD()` print it:
/// `*` and 40 hex digits of either case.
pub fn parse_stored_hash(text: &str) -> Option<[u8; 20]> {
    let hex = text.strip_prefix('*')?.as_bytes();
    if hex.len() != 2 * HASH_LEN {
        return None;
    }
    let mut hash = [0u8; HASH_LEN];
    for (byte, pair) in hash.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Some(hash)
}

/// Whether `response` proves knowledge of the password behind `stored`,
/// in constant time. The server recovers SHA1(pw) by undoing the XOR and
/// checks that it hashes to `stored`. An empty response is valid only when
/// the stored hash is that of the empty password, as clients send nothing
/// for an empty password.
pub fn verify(stored: &[u8; 20], nonce: &[u8], response: &[u8]) -> bool {
    if response.is_empty() {
        return constant_time_eq(stored, &stored_hash(b""));
    }
    let Ok(mut candidate) = <[u8; HASH_LEN]>::try_from(response) else {
        return false;
    };
    xor_repeating(&mut candidate, &nonce_mask(stored, nonce));
    constant_time_eq(&Sha1::digest(candidate), stored)
}

/// SHA1(nonce[..20] + stored): the mask over SHA1(pw) in the response.
fn nonce_mask(stored: &[u8; HASH_LEN], nonce: &[u8]) -> [u8; HASH_LEN] {
    Sha1::new()
        .chain_update(significant(nonce))
        .chain_update(stored)
        .finalize()
        .into()
}

fn hex_digit(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    use mysql_common::auth::plugins::mysql_native_password::scramble_native;

    use super::super::test_support::{TEST_VECTOR_NONCE as NONCE, assert_agrees_with_mysql_common};
    use super::*;

    #[test]
    fn scramble_matches_mysql_common() {
        // mysql_common's own test vector.
        let expected = [
            0x09, 0xcf, 0xf8, 0x85, 0x5e, 0x9e, 0x70, 0x53, 0x40, 0xff, 0x22, 0x70, 0xd8, 0xfb,
            0x9f, 0xad, 0xba, 0x90, 0x6b, 0x70,
        ];
        assert_eq!(scramble(b"G!ider27", &NONCE), expected);
        assert_agrees_with_mysql_common(scramble, |password| scramble_native(&NONCE, password));
    }

    #[test]
    fn stored_hash_matches_mysqls_password_function() {
        // SELECT PASSWORD('password') on MySQL 5.7.
        let expected = parse_stored_hash("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
        assert_eq!(Some(stored_hash(b"password")), expected);
    }

    #[test]
    fn parse_stored_hash_accepts_either_case_and_nothing_else() {
        let upper = parse_stored_hash("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
        let lower = parse_stored_hash("*2470c0c06dee42fd1618bb99005adca2ec9d1e19");
        assert!(upper.is_some());
        assert_eq!(upper, lower);
        assert_eq!(
            parse_stored_hash("2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"),
            None
        );
        assert_eq!(
            parse_stored_hash("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E1"),
            None
        );
        assert_eq!(
            parse_stored_hash("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E1G"),
            None
        );
        assert_eq!(
            parse_stored_hash("*+470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"),
            None
        );
        assert_eq!(parse_stored_hash("*"), None);
        assert_eq!(
            parse_stored_hash("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1É"),
            None
        );
    }

    #[test]
    fn verify_accepts_the_right_password_only() {
        let stored = stored_hash(b"secret");
        assert!(verify(&stored, &NONCE, &scramble(b"secret", &NONCE)));
        assert!(!verify(&stored, &NONCE, &scramble(b"Secret", &NONCE)));
        assert!(!verify(
            &stored,
            b"another nonce 123456",
            &scramble(b"secret", &NONCE)
        ));
        assert!(!verify(&stored, &NONCE, &scramble(b"secret", &NONCE)[..19]));
        assert!(!verify(&stored, &NONCE, &[]));
    }

    #[test]
    fn empty_response_matches_only_the_empty_password() {
        assert!(verify(&stored_hash(b""), &NONCE, &[]));
        assert!(!verify(&stored_hash(b"x"), &NONCE, &[]));
    }
}

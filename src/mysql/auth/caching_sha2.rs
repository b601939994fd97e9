//! `caching_sha2_password` fast authentication: the SHA-256 scramble a
//! client answers the nonce with, and its check against a known password.
//! (Full authentication sends the password itself, over TLS or RSA; see
//! the `rsa` module.)
//!
//! A client with an empty password sends an empty auth response instead of
//! a scramble; callers building a response do the same.

use sha2::{Digest, Sha256};

use super::crypto::{constant_time_eq, xor_repeating};
use super::nonce::significant;

/// The client's answer: XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)) + nonce)),
/// over the first 20 bytes of the nonce. An empty password is answered with
/// an empty response, not with this.
pub fn scramble(password: &[u8], nonce: &[u8]) -> [u8; 32] {
    let mut response: [u8; 32] = Sha256::digest(password).into();
    let mask: [u8; 32] = Sha256::new()
        .chain_update(Sha256::digest(response))
        .chain_update(significant(nonce))
        .finalize()
        .into();
    xor_repeating(&mut response, &mask);
    response
}

/// Whether `response` is the fast-auth scramble of `password` for this
/// nonce, in constant time. The empty password matches only an empty
/// response, and an empty response only the empty password; like MySQL, a
/// lone NUL counts as empty, since some connectors send one.
pub fn verify_fast(password: &[u8], nonce: &[u8], response: &[u8]) -> bool {
    let response_is_empty = matches!(response, [] | [0]);
    if password.is_empty() || response_is_empty {
        return password.is_empty() && response_is_empty;
    }
    constant_time_eq(&scramble(password, nonce), response)
}

#[cfg(test)]
mod tests {
    use mysql_common::auth::plugins::caching_sha2_password::scramble_sha256;

    use super::super::test_support::{TEST_VECTOR_NONCE as NONCE, assert_agrees_with_mysql_common};
    use super::*;

    #[test]
    fn scramble_matches_mysql_common() {
        // mysql_common's own test vector.
        let expected = [
            0x4f, 0x97, 0xbb, 0xfd, 0x20, 0x24, 0x01, 0xc4, 0x2a, 0x69, 0xde, 0xaa, 0xe5, 0x3b,
            0xda, 0x07, 0x7e, 0xd7, 0x57, 0x85, 0x63, 0xc1, 0xa8, 0x0e, 0xb8, 0x16, 0xc8, 0x21,
            0x19, 0xb6, 0x8d, 0x2e,
        ];
        assert_eq!(scramble(b"G!ider27", &NONCE), expected);
        assert_agrees_with_mysql_common(scramble, |password| scramble_sha256(&NONCE, password));
    }

    #[test]
    fn verify_fast_accepts_the_right_password_only() {
        let response = scramble(b"secret", &NONCE);
        assert!(verify_fast(b"secret", &NONCE, &response));
        assert!(!verify_fast(b"secreT", &NONCE, &response));
        assert!(!verify_fast(b"secret", b"another nonce 123456", &response));
        assert!(!verify_fast(b"secret", &NONCE, &response[..31]));
        assert!(!verify_fast(b"secret", &NONCE, &[]));
    }

    #[test]
    fn empty_password_matches_only_an_empty_response() {
        assert!(verify_fast(b"", &NONCE, &[]));
        assert!(verify_fast(b"", &NONCE, &[0]));
        assert!(!verify_fast(b"secret", &NONCE, &[0]));
        assert!(!verify_fast(b"", &NONCE, &scramble(b"", &NONCE)));
    }
}

//! Secrets for users churnstile does not know (or knows without a
//! password), so their login runs the same challenge as a known user's and
//! fails the same way, as PostgreSQL's mock authentication does: nothing in
//! the exchange tells an attacker which user names exist. Derived from a
//! per-process random key and the user name, so a name's mock SCRAM salt
//! is as stable across attempts as a real verifier's.

use std::sync::OnceLock;

use super::crypto::hmac_sha256;
use super::scram_verifier::{ITERATIONS, SALT_LEN};
use crate::config::{ClientSecret, ScramVerifier};

/// Random once per process; never leaves it.
fn process_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

/// `purpose`-specific bytes for `user`, stable for this process.
fn derived(purpose: &[u8], user: &str) -> [u8; 32] {
    let mut message = purpose.to_vec();
    message.push(0);
    message.extend_from_slice(user.as_bytes());
    hmac_sha256(process_key(), &message)
}

/// A SCRAM verifier no password matches, with a salt and iteration count
/// that look like a real one's.
pub fn mock_scram_verifier(user: &str) -> ScramVerifier {
    ScramVerifier {
        iterations: ITERATIONS,
        salt: derived(b"scram salt", user)[..SALT_LEN].to_vec(),
        stored_key: derived(b"scram stored key", user),
        server_key: derived(b"scram server key", user),
    }
}

/// An MD5 secret no password is known to match.
pub fn mock_md5_secret(user: &str) -> ClientSecret {
    let hash = derived(b"md5", user);
    ClientSecret::Md5(hash[..16].try_into().expect("16 of 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_s_mock_salt_is_stable_and_differs_between_users() {
        let first = mock_scram_verifier("nosuch");
        assert_eq!(first.salt, mock_scram_verifier("nosuch").salt);
        assert_eq!(first.salt.len(), SALT_LEN);
        assert_eq!(first.iterations, 4096);
        assert_ne!(first.salt, mock_scram_verifier("other").salt);
        assert_ne!(first.stored_key, first.server_key);
    }

    #[test]
    fn mock_md5_secrets_differ_between_users() {
        assert_ne!(mock_md5_secret("a"), mock_md5_secret("b"));
        assert_eq!(mock_md5_secret("a"), mock_md5_secret("a"));
    }
}

//! Making SCRAM-SHA-256 verifiers from passwords, the way PostgreSQL stores
//! them in `pg_authid.rolpassword`, and writing them in PostgreSQL's text form.

#[cfg(test)]
use base64::Engine;
#[cfg(test)]
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;

use super::crypto::{hmac_sha256, keyed_hmac_sha256, sha256};
use crate::config::ScramVerifier;

/// PostgreSQL's default `scram_iterations`.
pub(super) const ITERATIONS: u32 = 4096;
pub(super) const SALT_LEN: usize = 16;

/// A verifier for `password` with a fresh random salt, as
/// `password_encryption = scram-sha-256` would store it.
pub fn scram_verifier_from_password(password: &str) -> ScramVerifier {
    let mut salt = [0u8; SALT_LEN];
    rand::fill(&mut salt);
    derive_verifier(password, salt.to_vec(), ITERATIONS)
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64 as
/// PostgreSQL writes it. Only the tests write verifiers out today, to
/// compare them with PostgreSQL's.
#[cfg(test)]
fn scram_secret_text(verifier: &ScramVerifier) -> String {
    format!(
        "SCRAM-SHA-256${}:{}${}:{}",
        verifier.iterations,
        STANDARD.encode(&verifier.salt),
        STANDARD.encode(verifier.stored_key),
        STANDARD.encode(verifier.server_key)
    )
}

fn derive_verifier(password: &str, salt: Vec<u8>, iterations: u32) -> ScramVerifier {
    // PostgreSQL applies SASLprep first; raw bytes agree for ASCII passwords.
    let salted_password = hi(password.as_bytes(), &salt, iterations);
    let client_key = hmac_sha256(&salted_password, b"Client Key");
    ScramVerifier {
        iterations,
        stored_key: sha256(&client_key),
        server_key: hmac_sha256(&salted_password, b"Server Key"),
        salt,
    }
}

/// RFC 5802's `Hi`: PBKDF2-HMAC-SHA-256 with a single 32-byte block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let keyed = keyed_hmac_sha256(password);
    let mut block: [u8; 32] = keyed
        .clone()
        .chain_update(salt)
        .chain_update(1u32.to_be_bytes())
        .finalize()
        .into_bytes()
        .into();
    let mut result = block;
    for _ in 1..iterations {
        block = keyed
            .clone()
            .chain_update(block)
            .finalize()
            .into_bytes()
            .into();
        for (result_byte, block_byte) in result.iter_mut().zip(block) {
            *result_byte ^= block_byte;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by PostgreSQL for the password `secret`.
    const POSTGRES_VERIFIER: &str = "SCRAM-SHA-256$4096:zOe+ARQyx0fFwT0Ok4b4tQ==$a3dWGiPuvBNcTw+LuQVUyvbZMmOgg1Wb0ZwVEeyftTI=:n3h9jDpDo7R0jqwXKE1zHUDxuP2l4mqSAw0laJ0x3X8=";

    #[test]
    fn same_salt_gives_postgres_verifier_exactly() {
        let salt = STANDARD
            .decode("zOe+ARQyx0fFwT0Ok4b4tQ==")
            .expect("base64 salt");
        let verifier = derive_verifier("secret", salt, 4096);
        assert_eq!(scram_secret_text(&verifier), POSTGRES_VERIFIER);
    }

    #[test]
    fn hi_matches_pbkdf2_sha256_test_vector() {
        // PBKDF2-HMAC-SHA256("password", "salt", 2 iterations, 32 bytes), the
        // RFC 6070 case carried over to SHA-256; Python's hashlib agrees.
        let expected = [
            0xae, 0x4d, 0x0c, 0x95, 0xaf, 0x6b, 0x46, 0xd3, 0x2d, 0x0a, 0xdf, 0xf9, 0x28, 0xf0,
            0x6d, 0xd0, 0x2a, 0x30, 0x3f, 0x8e, 0xf3, 0xc2, 0x51, 0xdf, 0xd6, 0xe2, 0xd8, 0x5a,
            0x95, 0x47, 0x4c, 0x43,
        ];
        assert_eq!(hi(b"password", b"salt", 2), expected);
    }

    #[test]
    fn fresh_verifiers_use_postgres_defaults_and_random_salts() {
        let first = scram_verifier_from_password("secret");
        let second = scram_verifier_from_password("secret");
        assert_eq!(first.iterations, 4096);
        assert_eq!(first.salt.len(), 16);
        assert_ne!(first.salt, second.salt);
        assert_ne!(first.stored_key, second.stored_key);
    }

    #[test]
    fn secret_text_has_postgres_shape() {
        let text = scram_secret_text(&scram_verifier_from_password("secret"));
        let rest = text.strip_prefix("SCRAM-SHA-256$4096:").expect("prefix");
        let (salt, keys) = rest.split_once('$').expect("salt and keys");
        let (stored_key, server_key) = keys.split_once(':').expect("two keys");
        assert_eq!(STANDARD.decode(salt).map(|s| s.len()), Ok(16));
        assert_eq!(STANDARD.decode(stored_key).map(|k| k.len()), Ok(32));
        assert_eq!(STANDARD.decode(server_key).map(|k| k.len()), Ok(32));
    }
}

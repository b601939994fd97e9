//! The MD5 challenge (`AuthenticationMD5Password`): a fresh salt per login
//! and the check of the client's `md5...` answer against the stored secret.

use md5::{Digest, Md5};

use super::crypto::constant_time_eq;
use crate::config::ClientSecret;

/// A random salt for one `AuthenticationMD5Password` request.
pub fn new_md5_salt() -> [u8; 4] {
    rand::random()
}

/// Whether `response` (the PasswordMessage payload without its trailing
/// NUL) is `"md5" + hex(md5(hex(md5(password || user)) || salt))` for this
/// secret. Always false for a SCRAM verifier, which cannot answer MD5.
pub fn verify_md5_response(
    secret: &ClientSecret,
    user: &str,
    salt: [u8; 4],
    response: &[u8],
) -> bool {
    let stored: [u8; 16] = match secret {
        ClientSecret::Plain(password) => Md5::new()
            .chain_update(password.as_bytes())
            .chain_update(user.as_bytes())
            .finalize()
            .into(),
        ClientSecret::Md5(hash) => *hash,
        ClientSecret::Scram(_) | ClientSecret::MysqlNative(_) => return false,
    };
    let salted: [u8; 16] = Md5::new()
        .chain_update(lower_hex(&stored))
        .chain_update(salt)
        .finalize()
        .into();
    let mut expected = b"md5".to_vec();
    expected.extend_from_slice(&lower_hex(&salted));
    constant_time_eq(&expected, response)
}

fn lower_hex(bytes: &[u8; 16]) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScramVerifier;
    use postgres_protocol::authentication::md5_hash;

    const SALT: [u8; 4] = [0x2a, 0x3d, 0x8f, 0xe0];

    fn md5_secret(password: &str, user: &str) -> ClientSecret {
        let text = postgres_protocol::password::md5(password.as_bytes(), user);
        let hex = text
            .strip_prefix("md5")
            .expect("postgres-protocol writes md5 prefix");
        let mut hash = [0u8; 16];
        for (byte, pair) in hash.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).expect("hex is ASCII");
            *byte = u8::from_str_radix(pair, 16).expect("valid hex");
        }
        ClientSecret::Md5(hash)
    }

    #[test]
    fn plain_secret_accepts_the_clients_answer() {
        let secret = ClientSecret::Plain("password".into());
        let response = md5_hash(b"md5_user", b"password", SALT);
        assert!(verify_md5_response(
            &secret,
            "md5_user",
            SALT,
            response.as_bytes()
        ));
    }

    #[test]
    fn md5_secret_accepts_the_clients_answer() {
        let secret = md5_secret("s3cret", "alice");
        let response = md5_hash(b"alice", b"s3cret", SALT);
        assert!(verify_md5_response(
            &secret,
            "alice",
            SALT,
            response.as_bytes()
        ));
    }

    #[test]
    fn wrong_password_or_salt_is_rejected() {
        let plain = ClientSecret::Plain("s3cret".into());
        let hashed = md5_secret("s3cret", "alice");
        let right = md5_hash(b"alice", b"s3cret", SALT);
        let wrong_password = md5_hash(b"alice", b"guess", SALT);
        for secret in [&plain, &hashed] {
            assert!(!verify_md5_response(
                secret,
                "alice",
                SALT,
                wrong_password.as_bytes()
            ));
            assert!(!verify_md5_response(
                secret,
                "alice",
                [0; 4],
                right.as_bytes()
            ));
        }
    }

    #[test]
    fn plain_secret_is_salted_with_the_login_user() {
        // An md5 secret already has its user baked in; a plain one takes it here.
        let plain = ClientSecret::Plain("s3cret".into());
        let for_alice = md5_hash(b"alice", b"s3cret", SALT);
        assert!(!verify_md5_response(
            &plain,
            "bob",
            SALT,
            for_alice.as_bytes()
        ));
    }

    #[test]
    fn scram_secret_never_answers_md5() {
        let secret = ClientSecret::Scram(ScramVerifier {
            iterations: 4096,
            salt: vec![0; 16],
            stored_key: [0; 32],
            server_key: [0; 32],
        });
        let response = md5_hash(b"alice", b"s3cret", SALT);
        assert!(!verify_md5_response(
            &secret,
            "alice",
            SALT,
            response.as_bytes()
        ));
    }

    #[test]
    fn garbage_responses_are_rejected() {
        let secret = ClientSecret::Plain("s3cret".into());
        let right = md5_hash(b"alice", b"s3cret", SALT);
        let upper = right.to_uppercase();
        let with_nul = format!("{right}\0");
        let garbage: [&[u8]; 7] = [
            b"",
            b"md5",
            b"s3cret",
            &right.as_bytes()[..right.len() - 1],
            with_nul.as_bytes(),
            upper.as_bytes(),
            &[0xff; 35],
        ];
        for response in garbage {
            assert!(!verify_md5_response(&secret, "alice", SALT, response));
        }
    }

    #[test]
    fn salts_vary() {
        let salts: std::collections::HashSet<[u8; 4]> = (0..8).map(|_| new_md5_salt()).collect();
        assert!(salts.len() > 1);
    }
}

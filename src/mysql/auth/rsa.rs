//! The RSA step of `caching_sha2_password` full authentication without TLS:
//! the server hands out its public key, the client sends the password
//! XORed with the nonce and encrypted with RSA-OAEP (SHA-1), and the server
//! decrypts it. Both directions live here: churnstile is the server to its
//! clients and a client to the upstream servers.

use std::fmt;

use ::rsa::pkcs1::DecodeRsaPublicKey;
use ::rsa::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use ::rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;

use super::crypto::xor_repeating;
use super::nonce::significant;

/// Key size of the pair a server generates, as MySQL's default key files.
const KEY_BITS: usize = 2048;

/// Why an RSA step of a login failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "could not generate the {KEY_BITS}-bit RSA key pair for caching_sha2_password logins without TLS: {0}"
    )]
    KeyGeneration(::rsa::Error),
    #[error("could not write the RSA public key as PEM: {0}")]
    PublicKeyPem(String),
    #[error(
        "the server's RSA public key is neither a \"BEGIN PUBLIC KEY\" nor a \"BEGIN RSA PUBLIC KEY\" PEM block ({0}); check the server's caching_sha2_password_public_key_path"
    )]
    PublicKey(String),
    #[error(
        "could not RSA-encrypt the password ({0}); a 2048-bit key carries passwords of at most 213 bytes, so use TLS for longer ones"
    )]
    Encrypt(::rsa::Error),
    #[error(
        "the client's RSA-encrypted password does not decrypt with churnstile's key; the client may have used another server's public key (let it request the key, or use TLS)"
    )]
    Decrypt,
    #[error(
        "the decrypted password does not end in NUL: the client mixed it with another nonce than this login's"
    )]
    NotTerminated,
    #[error("no nonce to mix the password with: the handshake's scramble is empty")]
    EmptyNonce,
}

/// The RSA key pair a server uses for full authentication without TLS.
pub struct ServerKey {
    private: RsaPrivateKey,
    public_pem: String,
}

impl ServerKey {
    /// Generates a 2048-bit key pair (takes a while: call once per process, lazily, off the async threads).
    pub fn generate() -> Result<ServerKey, AuthError> {
        let private =
            RsaPrivateKey::new(&mut rand::rng(), KEY_BITS).map_err(AuthError::KeyGeneration)?;
        let public_pem = private
            .as_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|error| AuthError::PublicKeyPem(error.to_string()))?;
        Ok(ServerKey {
            private,
            public_pem,
        })
    }

    /// The public key as a `BEGIN PUBLIC KEY` (SPKI) PEM block, as MySQL
    /// sends it in answer to REQUEST_PUBLIC_KEY.
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// Decrypts an RSA-OAEP(SHA-1) encrypted password and undoes the XOR with the nonce (repeating it), stripping the trailing NUL.
    pub fn decrypt_password(&self, ciphertext: &[u8], nonce: &[u8]) -> Result<Vec<u8>, AuthError> {
        let nonce = significant(nonce);
        if nonce.is_empty() {
            return Err(AuthError::EmptyNonce);
        }
        // Blinded, so decryption time says nothing about the private key.
        let mut password = self
            .private
            .decrypt_blinded(&mut rand::rng(), Oaep::<Sha1>::new(), ciphertext)
            .map_err(|_| AuthError::Decrypt)?;
        xor_repeating(&mut password, nonce);
        match password.pop() {
            Some(0) => Ok(password),
            _ => Err(AuthError::NotTerminated),
        }
    }
}

/// Shows only the public half, so a key never reaches a log.
impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKey")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

/// What a client sends in full authentication: (password + NUL) XOR nonce (repeated), RSA-OAEP(SHA-1)-encrypted with the server's PEM public key (accept both "BEGIN PUBLIC KEY" SPKI and "BEGIN RSA PUBLIC KEY" PKCS#1 PEM).
pub fn encrypt_password(
    password: &[u8],
    nonce: &[u8],
    public_key_pem: &str,
) -> Result<Vec<u8>, AuthError> {
    let nonce = significant(nonce);
    if nonce.is_empty() {
        return Err(AuthError::EmptyNonce);
    }
    let key = parse_public_key(public_key_pem)?;
    let mut message = password.to_vec();
    message.push(0);
    xor_repeating(&mut message, nonce);
    key.encrypt(&mut rand::rng(), Oaep::<Sha1>::new(), &message)
        .map_err(AuthError::Encrypt)
}

fn parse_public_key(pem: &str) -> Result<RsaPublicKey, AuthError> {
    // Servers send the key file as it is on disk, sometimes with a trailing
    // NUL or blank line the PEM parser refuses.
    let pem = pem.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    let parsed = if pem.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
        RsaPublicKey::from_pkcs1_pem(pem).map_err(|error| error.to_string())
    } else {
        RsaPublicKey::from_public_key_pem(pem).map_err(|error| error.to_string())
    };
    parsed.map_err(AuthError::PublicKey)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use ::rsa::pkcs1::{EncodeRsaPublicKey, LineEnding as Pkcs1LineEnding};
    use ::rsa::traits::PublicKeyParts;

    use super::*;

    const NONCE: [u8; 20] = *b"K8#pQ!x7@Lm2&Zr9^Tw4";

    /// One public key written by `openssl pkey -pubout` and by
    /// `openssl rsa -RSAPublicKey_out`.
    const OPENSSL_SPKI: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA4YJy9DXHqHmGPeF2RHoN
O19OikkrT5FI95PHlF25yzXsG4lalPCOGdpMXOPYTizT95Rz8F1X0IpjBZeWeucX
u3UxQ/BD1aS9u5KWdLATZ1fCtNFEBLkXHdWmccakd/KxKo2OxIHnCqusM8B/7RVC
6oRwzZ13g7dDp72LEP5m8Dm86eojucj0s4TbAJAOOQM4P4Vk6VSF/RM99/JnIG3m
AQnUMg2i8/jNy9qj2vzX1ljrCMOrJGEyQArDfKIHQAX/blwSNQExzQZVYzrnxRQP
mNlshkieVXOk1iMC2goBDtXzpuP/kUX5VM2QDcffTYJNiyK5t5soA5pOjb+l3FMr
5wIDAQAB
-----END PUBLIC KEY-----
";
    const OPENSSL_PKCS1: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEA4YJy9DXHqHmGPeF2RHoNO19OikkrT5FI95PHlF25yzXsG4lalPCO
GdpMXOPYTizT95Rz8F1X0IpjBZeWeucXu3UxQ/BD1aS9u5KWdLATZ1fCtNFEBLkX
HdWmccakd/KxKo2OxIHnCqusM8B/7RVC6oRwzZ13g7dDp72LEP5m8Dm86eojucj0
s4TbAJAOOQM4P4Vk6VSF/RM99/JnIG3mAQnUMg2i8/jNy9qj2vzX1ljrCMOrJGEy
QArDfKIHQAX/blwSNQExzQZVYzrnxRQPmNlshkieVXOk1iMC2goBDtXzpuP/kUX5
VM2QDcffTYJNiyK5t5soA5pOjb+l3FMr5wIDAQAB
-----END RSA PUBLIC KEY-----
";

    /// Key generation takes a moment, so the tests share one pair.
    fn server_key() -> &'static ServerKey {
        static KEY: OnceLock<ServerKey> = OnceLock::new();
        KEY.get_or_init(|| ServerKey::generate().expect("key generation"))
    }

    #[test]
    fn public_key_is_an_spki_pem_block() {
        let pem = server_key().public_key_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
        let key = parse_public_key(pem).expect("parses back");
        assert_eq!(key.size(), KEY_BITS / 8);
    }

    #[test]
    fn password_round_trips_through_encryption() {
        let key = server_key();
        for password in [&b"secret"[..], b"", &[b'p'; 213]] {
            let ciphertext =
                encrypt_password(password, &NONCE, key.public_key_pem()).expect("encrypts");
            assert_eq!(ciphertext.len(), 256);
            assert_eq!(
                key.decrypt_password(&ciphertext, &NONCE).expect("decrypts"),
                password
            );
        }
    }

    #[test]
    fn decrypts_what_mysql_common_encrypts() {
        let mut message = b"hunter2\0".to_vec();
        xor_repeating(&mut message, &NONCE);
        let key = server_key();
        let ciphertext = mysql_common::crypto::encrypt(&message, key.public_key_pem().as_bytes())
            .expect("mysql_common encrypts");
        assert_eq!(
            key.decrypt_password(&ciphertext, &NONCE).expect("decrypts"),
            b"hunter2"
        );
    }

    #[test]
    fn accepts_spki_and_pkcs1_pem_from_openssl() {
        let spki = parse_public_key(OPENSSL_SPKI).expect("SPKI parses");
        let pkcs1 = parse_public_key(OPENSSL_PKCS1).expect("PKCS#1 parses");
        assert_eq!(spki, pkcs1);
        let with_nul = format!("{OPENSSL_SPKI}\0");
        let ciphertext = encrypt_password(b"secret", &NONCE, &with_nul).expect("encrypts");
        assert_eq!(ciphertext.len(), 256);
    }

    #[test]
    fn pkcs1_form_of_our_own_key_decrypts() {
        let key = server_key();
        let pkcs1 = key
            .private
            .as_public_key()
            .to_pkcs1_pem(Pkcs1LineEnding::LF)
            .expect("PKCS#1 PEM");
        let ciphertext = encrypt_password(b"secret", &NONCE, &pkcs1).expect("encrypts");
        assert_eq!(
            key.decrypt_password(&ciphertext, &NONCE).expect("decrypts"),
            b"secret"
        );
    }

    #[test]
    fn ciphertext_for_another_key_is_an_error() {
        let ciphertext = encrypt_password(b"secret", &NONCE, OPENSSL_SPKI).expect("encrypts");
        assert!(matches!(
            server_key().decrypt_password(&ciphertext, &NONCE),
            Err(AuthError::Decrypt)
        ));
    }

    #[test]
    fn garbage_ciphertext_is_an_error_not_a_panic() {
        let key = server_key();
        for garbage in [
            &[][..],
            &[0u8; 1],
            &[0xFF; 255],
            &[0xFF; 256],
            &[0x5A; 256],
            &[7; 4096],
        ] {
            assert!(matches!(
                key.decrypt_password(garbage, &NONCE),
                Err(AuthError::Decrypt)
            ));
        }
    }

    #[test]
    fn wrong_nonce_is_caught_by_the_missing_nul() {
        let key = server_key();
        let ciphertext = encrypt_password(b"abc", &NONCE, key.public_key_pem()).expect("encrypts");
        let other_nonce = *b"00000000000000000000";
        assert!(matches!(
            key.decrypt_password(&ciphertext, &other_nonce),
            Err(AuthError::NotTerminated)
        ));
    }

    #[test]
    fn password_too_long_for_the_key_is_an_error() {
        let error = encrypt_password(&[b'p'; 214], &NONCE, server_key().public_key_pem())
            .expect_err("too long");
        assert!(matches!(error, AuthError::Encrypt(_)));
        assert!(error.to_string().contains("use TLS"));
    }

    #[test]
    fn bad_pem_and_empty_nonce_are_errors() {
        assert!(matches!(
            encrypt_password(b"secret", &NONCE, "not a key"),
            Err(AuthError::PublicKey(_))
        ));
        let truncated = &OPENSSL_SPKI[..200];
        assert!(matches!(
            encrypt_password(b"secret", &NONCE, truncated),
            Err(AuthError::PublicKey(_))
        ));
        assert!(matches!(
            encrypt_password(b"secret", &[], OPENSSL_SPKI),
            Err(AuthError::EmptyNonce)
        ));
        assert!(matches!(
            server_key().decrypt_password(&[0; 256], &[]),
            Err(AuthError::EmptyNonce)
        ));
    }

    #[test]
    fn debug_output_leaves_out_the_private_key() {
        let shown = format!("{:?}", server_key());
        assert!(shown.contains("BEGIN PUBLIC KEY"));
        assert!(!shown.contains("PRIVATE"));
        assert!(!shown.contains("private"));
    }
}

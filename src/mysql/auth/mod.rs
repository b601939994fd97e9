//! MySQL/MariaDB authentication crypto, sans-IO: the scrambles of
//! `mysql_native_password` and `caching_sha2_password`, their server-side
//! checks, and the RSA step of caching_sha2 full authentication without TLS.
//! The login state machine owns the packets; this module only turns
//! passwords, nonces and client bytes into responses and verdicts.

pub mod caching_sha2;
mod crypto;
pub mod native;
pub mod nonce;
pub mod rsa;
#[cfg(test)]
mod test_support;

pub use nonce::new_scramble;
pub use rsa::{AuthError, ServerKey, encrypt_password};

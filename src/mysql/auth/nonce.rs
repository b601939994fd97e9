//! The 20-byte nonce (the "scramble" of the handshake) a server sends for
//! each login, and how much of a nonce the password algorithms use.

/// Length of the nonce every MySQL password plugin works with.
pub const NONCE_LEN: usize = 20;

/// 20 random bytes as MySQL servers send them: printable ASCII, never NUL or '$'.
/// No NUL because clients read the scramble as a C string; no `$` because
/// it separates the fields of caching_sha2 stored hashes, so MySQL leaves it
/// out too.
pub fn new_scramble() -> [u8; NONCE_LEN] {
    std::array::from_fn(|_| {
        loop {
            let byte = rand::random_range(b'!'..=b'~');
            if byte != b'$' {
                break byte;
            }
        }
    })
}

/// The part of `nonce` the password algorithms hash: its first 20 bytes.
/// Servers send 20, sometimes followed by a NUL that is not part of it.
pub(super) fn significant(nonce: &[u8]) -> &[u8] {
    &nonce[..nonce.len().min(NONCE_LEN)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrambles_are_printable_without_nul_or_dollar() {
        for _ in 0..200 {
            let scramble = new_scramble();
            assert!(scramble.iter().all(|b| b.is_ascii_graphic() && *b != b'$'));
        }
    }

    #[test]
    fn scrambles_differ() {
        assert_ne!(new_scramble(), new_scramble());
    }

    #[test]
    fn only_the_first_20_bytes_count() {
        let with_nul = *b"abcdefghijklmnopqrst\0";
        assert_eq!(significant(&with_nul), b"abcdefghijklmnopqrst");
        assert_eq!(significant(b"short"), b"short");
    }
}

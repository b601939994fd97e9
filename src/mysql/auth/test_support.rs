//! What the scramble tests of both password plugins share: the nonce of
//! mysql_common's test vectors and a check of a scramble against
//! mysql_common's implementation of it.

use super::nonce::NONCE_LEN;

pub(super) const TEST_VECTOR_NONCE: [u8; NONCE_LEN] = *b"NR3HP:qIYa_9=db?Sd{`";

/// Asserts that `ours` gives what `theirs` (mysql_common, over
/// [`TEST_VECTOR_NONCE`]) gives for a few passwords, also when the nonce
/// arrives with the NUL servers put after it.
pub(super) fn assert_agrees_with_mysql_common<const N: usize>(
    ours: fn(&[u8], &[u8]) -> [u8; N],
    theirs: impl Fn(&[u8]) -> Option<[u8; N]>,
) {
    let with_nul = [&TEST_VECTOR_NONCE[..], b"\0"].concat();
    for password in [&b"secret"[..], b"p\xc3\xa4ssw\xc3\xb6rd", &[b'x'; 300]] {
        let expected = theirs(password);
        assert_eq!(
            Some(ours(password, &TEST_VECTOR_NONCE)),
            expected,
            "{password:?}"
        );
        assert_eq!(
            Some(ours(password, &with_nul)),
            expected,
            "NUL after the nonce"
        );
    }
}

//! The two byte operations every MySQL scramble is built from: XOR with a
//! repeating key and a comparison that takes the same time wherever two
//! secrets differ.

/// XORs `data` in place with `key`, repeating `key` as often as needed.
/// An empty key leaves `data` unchanged.
pub(super) fn xor_repeating(data: &mut [u8], key: &[u8]) {
    for (byte, k) in data.iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// Compares without an early exit, so timing tells an attacker nothing
/// about where a guessed response first differs. Lengths are not secret.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    a.len() == b.len() && std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_repeats_the_key() {
        let mut data = *b"\x01\x02\x03\x04\x05";
        xor_repeating(&mut data, &[0xFF, 0x00]);
        assert_eq!(data, [0xFE, 0x02, 0xFC, 0x04, 0xFA]);
        xor_repeating(&mut data, &[]);
        assert_eq!(data, [0xFE, 0x02, 0xFC, 0x04, 0xFA]);
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"scramble", b"scramble"));
        assert!(!constant_time_eq(b"scramble", b"scrambla"));
        assert!(!constant_time_eq(b"scramble", b"scram"));
        assert!(constant_time_eq(b"", b""));
    }
}

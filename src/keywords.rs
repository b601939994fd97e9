//! The prefilter both protocols run over every query text before reading
//! it as SQL: one pass that compares only where a trigger word's first
//! letter stands, so the common query costs no allocation and no tokenising.

/// Trigger words (lower case) by their first letter, lower case.
pub type Triggers = fn(u8) -> &'static [&'static [u8]];

/// True when `text` contains, case-insensitively, a word `triggers` lists.
pub fn mentions_any(text: &[u8], triggers: Triggers) -> bool {
    (0..text.len()).any(|at| {
        let rest = &text[at..];
        triggers(rest[0].to_ascii_lowercase()).iter().any(|word| {
            rest.get(..word.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(word))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triggers(letter: u8) -> &'static [&'static [u8]] {
        match letter {
            b'l' => &[b"lock"],
            b'@' => &[b"@"],
            _ => &[],
        }
    }

    #[test]
    fn finds_trigger_words_in_any_case_anywhere() {
        assert!(mentions_any(b"UNLOCK TABLES", triggers));
        assert!(mentions_any(b"select @x", triggers));
        assert!(!mentions_any(b"SELECT 1 FROM t", triggers));
        assert!(!mentions_any(b"", triggers));
    }
}

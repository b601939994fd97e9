//! Hiding passwords in command lines before a report or an error message
//! shows them: `postgres://app:secret@db/app` and `password=secret` (libpq
//! keyword strings) keep their shape with the secret replaced by `***`.

const HIDDEN: &str = "***";

/// `text` with URL passwords and `password=` values replaced by `***`.
pub(super) fn redact_secrets(text: &str) -> String {
    redact_keyword_passwords(&redact_url_passwords(text))
}

/// `scheme://user:secret@host` → `scheme://user:***@host`, for every URL.
fn redact_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@').and_then(|at| {
            let colon = authority[..at].find(':')?;
            Some((colon, at))
        }) {
            Some((colon, at)) => {
                out.push_str(&authority[..=colon]);
                out.push_str(HIDDEN);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// `password=secret` → `password=***`, the key in any case.
fn redact_keyword_passwords(text: &str) -> String {
    const KEY: &str = "password=";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search_from = 0;
    while let Some(found) = lower[search_from..].find(KEY) {
        let value_start = search_from + found + KEY.len();
        let value_end = text[value_start..]
            .find(char::is_whitespace)
            .map_or(text.len(), |end| value_start + end);
        out.push_str(&text[copied..value_start]);
        if value_end > value_start {
            out.push_str(HIDDEN);
        }
        copied = value_end;
        search_from = value_end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_hidden() {
        let cases = [
            (
                "churnstile --upstream postgres://app:s3cr:et@db:5432/app --pool-size 5",
                "churnstile --upstream postgres://app:***@db:5432/app --pool-size 5",
            ),
            (
                "a mysql://root:pw@h b postgres://u:p@[::1]/x",
                "a mysql://root:***@h b postgres://u:***@[::1]/x",
            ),
            ("postgres://app@db/app", "postgres://app@db/app"),
            ("http://example.com/a@b:c", "http://example.com/a@b:c"),
            ("trailing ://", "trailing ://"),
        ];
        for (text, expected) in cases {
            assert_eq!(redact_secrets(text), expected);
        }
    }

    #[test]
    fn keyword_passwords_are_hidden() {
        assert_eq!(
            redact_secrets("psql host=db PASSWORD=hunter2 dbname=app"),
            "psql host=db PASSWORD=*** dbname=app"
        );
        assert_eq!(redact_secrets("x password="), "x password=");
        assert_eq!(redact_secrets("écrit password=é"), "écrit password=***");
    }
}

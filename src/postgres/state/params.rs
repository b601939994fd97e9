//! Startup parameters a client sends (application_name, client_encoding,
//! DateStyle, TimeZone, `options=-c ...`) turned into settings applied on
//! whichever server connection the client gets.

/// Startup parameters that are not session settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "options", "replication"];

/// Why the startup parameters cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    #[error(
        "invalid command-line argument in \"options\": {0:?} (only -c name=value and --name=value are supported)"
    )]
    UnsupportedOption(String),
    #[error("invalid \"options\" value: {0}")]
    Malformed(&'static str),
}

/// The settings a client's startup packet asks for, in the order given;
/// `-c` settings in `options` come last so they win, as in PostgreSQL.
pub fn session_settings(params: &[(String, String)]) -> Result<Vec<(String, String)>, ParamError> {
    let mut settings: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| !NOT_SETTINGS.contains(&name.as_str()) && !name.starts_with("_pq_."))
        .cloned()
        .collect();
    if let Some((_, options)) = params.iter().find(|(name, _)| name == "options") {
        settings.extend(parse_options(options)?);
    }
    Ok(settings)
}

/// Parses libpq's `options`: space-separated switches, backslash escapes a
/// character; `-c name=value`, `-cname=value` and `--name=value`.
pub fn parse_options(options: &str) -> Result<Vec<(String, String)>, ParamError> {
    let words = split_words(options);
    let mut settings = Vec::new();
    let mut index = 0;
    while index < words.len() {
        let word = &words[index];
        let assignment = if word == "-c" {
            index += 1;
            words
                .get(index)
                .ok_or(ParamError::Malformed("-c without a setting"))?
                .as_str()
        } else if let Some(rest) = word.strip_prefix("--") {
            rest
        } else if let Some(rest) = word.strip_prefix("-c") {
            rest
        } else {
            return Err(ParamError::UnsupportedOption(word.clone()));
        };
        let (name, value) = assignment
            .split_once('=')
            .ok_or(ParamError::Malformed("setting without '='"))?;
        // PostgreSQL accepts dashes for underscores in option names.
        settings.push((name.replace('-', "_"), value.to_owned()));
        index += 1;
    }
    Ok(settings)
}

fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// One statement applying all settings for the session, with every name and
/// value passed as an escaped literal (never spliced in as SQL).
pub fn apply_settings_query(settings: &[(String, String)]) -> Option<String> {
    if settings.is_empty() {
        return None;
    }
    let calls: Vec<String> = settings
        .iter()
        .map(|(name, value)| {
            format!(
                "pg_catalog.set_config({}, {}, false)",
                literal(name),
                literal(value)
            )
        })
        .collect();
    Some(format!("SELECT {}", calls.join(", ")))
}

/// An `E'...'` literal, safe whatever `standard_conforming_strings` is.
pub fn literal(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('\'', "''");
    format!("E'{escaped}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn settings_skip_identity_and_protocol_options() {
        let params = pairs(&[
            ("user", "u"),
            ("database", "d"),
            ("application_name", "app"),
            ("_pq_.compression", "on"),
            ("options", "-c search_path=a,b --statement-timeout=5s"),
            ("DateStyle", "ISO"),
        ]);
        assert_eq!(
            session_settings(&params).unwrap(),
            pairs(&[
                ("application_name", "app"),
                ("DateStyle", "ISO"),
                ("search_path", "a,b"),
                ("statement_timeout", "5s"),
            ])
        );
    }

    #[test]
    fn options_honour_backslash_escapes() {
        assert_eq!(
            parse_options(r"-c application_name=my\ app -cwork_mem=64MB").unwrap(),
            pairs(&[("application_name", "my app"), ("work_mem", "64MB")])
        );
    }

    #[test]
    fn unsupported_options_are_rejected() {
        assert_eq!(
            parse_options("-d 5"),
            Err(ParamError::UnsupportedOption("-d".into()))
        );
        assert_eq!(
            parse_options("-c"),
            Err(ParamError::Malformed("-c without a setting"))
        );
        assert_eq!(
            parse_options("-c foo"),
            Err(ParamError::Malformed("setting without '='"))
        );
    }

    #[test]
    fn query_escapes_literals() {
        let query = apply_settings_query(&pairs(&[("application_name", r"it's \ done")])).unwrap();
        assert_eq!(
            query,
            r"SELECT pg_catalog.set_config(E'application_name', E'it''s \\ done', false)"
        );
        assert_eq!(apply_settings_query(&[]), None);
    }
}

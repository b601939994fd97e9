//! The Prometheus text exposition format, read back (sans-IO): samples
//! with their labels, and the sums `churnstile top` shows.

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub(super) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Samples(pub Vec<Sample>);

impl Samples {
    /// Parses exposition text; lines that are not samples are skipped.
    pub(super) fn parse(text: &str) -> Self {
        Samples(text.lines().filter_map(parse_line).collect())
    }

    /// Every sample named `name`.
    pub(super) fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |sample| sample.name == name)
    }

    /// The sum of every sample named `name`, whatever its labels.
    pub(super) fn sum(&self, name: &str) -> f64 {
        self.named(name).map(|sample| sample.value).sum()
    }

    /// The sum over samples named `name` whose `key` label is `value`.
    pub(super) fn sum_where(&self, name: &str, key: &str, value: &str) -> f64 {
        self.named(name)
            .filter(|sample| sample.label(key) == Some(value))
            .map(|sample| sample.value)
            .sum()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y \"quoted\""` into pairs, honouring escapes in values.
fn parse_labels(mut text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (index, '"') => break index,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, other) => value.push(other),
            }
        };
        labels.push((key.trim_start_matches(',').to_owned(), value));
        text = rest[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP churnstile_reuse_ratio Client logins per server connection opened.\n\
        # TYPE churnstile_reuse_ratio gauge\n\
        churnstile_reuse_ratio 12.5\n\
        churnstile_upstream_connections_opened_total{database=\"app\",user=\"a\"} 3\n\
        churnstile_upstream_connections_opened_total{database=\"app\",user=\"b\"} 4\n\
        churnstile_client_pins_total{reason=\"listen\"} 2\n\
        odd{label=\"a \\\"quoted\\\", value\"} 1\n\
        churnstile_client_session_seconds_bucket{database=\"app\",le=\"+Inf\"} 9\n\
        garbage line\n";

    #[test]
    fn samples_and_labels_are_read() {
        let samples = Samples::parse(TEXT);
        assert_eq!(samples.0.len(), 6);
        assert_eq!(samples.sum("churnstile_reuse_ratio"), 12.5);
        assert_eq!(
            samples.sum("churnstile_upstream_connections_opened_total"),
            7.0
        );
        assert_eq!(
            samples.sum_where("churnstile_upstream_connections_opened_total", "user", "b"),
            4.0
        );
        let odd = samples.named("odd").next().unwrap();
        assert_eq!(odd.label("label"), Some("a \"quoted\", value"));
        let bucket = samples
            .named("churnstile_client_session_seconds_bucket")
            .next()
            .unwrap();
        assert_eq!(bucket.label("le"), Some("+Inf"));
        assert_eq!(samples.sum("missing"), 0.0);
    }
}

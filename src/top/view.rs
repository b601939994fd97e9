//! What `churnstile top` shows, computed from successive scrapes and drawn
//! as plain text lines (sans-IO): rates from counter differences, a shared
//! sparkline of client against upstream connects, and per-pool rows.

use std::collections::VecDeque;
use std::time::Instant;

use super::exposition::Samples;
use crate::metrics::{
    CLIENT_CONNECTIONS, CLIENT_PINS, CLIENTS_CONNECTED, CLIENTS_PINNED, EPHEMERAL_PORTS,
    EPHEMERAL_PORTS_USED, LISTENER_TIME_WAIT, MAX_FDS, OPEN_FDS, POOL_CLIENTS,
    POOL_MAX_WAIT_SECONDS, POOL_PAUSED, POOL_REUSE_RATIO, QUERIES, REUSE_RATIO, TRANSACTIONS,
    UPSTREAM_CONNECTIONS, UPSTREAM_OPENED, UPSTREAM_TIME_WAIT,
};

/// Upstream connects that succeeded: `UPSTREAM_OPENED` with `result="ok"`.
const OPENED_OK: Filter = Some(("result", "ok"));

/// Samples of a name counted: all, or those with this label value.
type Filter = Option<(&'static str, &'static str)>;

/// Scrapes kept: one minute of rates at one scrape a second.
const KEEP: usize = 61;
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Recent scrapes, oldest first.
#[derive(Debug, Default)]
pub(super) struct History {
    scrapes: VecDeque<(Instant, Samples)>,
}

impl History {
    pub(super) fn record(&mut self, at: Instant, samples: Samples) {
        if self.scrapes.len() == KEEP {
            self.scrapes.pop_front();
        }
        self.scrapes.push_back((at, samples));
    }

    fn latest(&self) -> Option<&Samples> {
        self.scrapes.back().map(|(_, samples)| samples)
    }

    /// Per-second rate of the summed counter `name` (its samples passing
    /// `filter`) between each two consecutive scrapes, oldest first. A
    /// restart (counter going down) counts from zero.
    fn rates(&self, name: &str, filter: Filter) -> Vec<f64> {
        let sum = |samples: &Samples| match filter {
            Some((key, value)) => samples.sum_where(name, key, value),
            None => samples.sum(name),
        };
        self.scrapes
            .iter()
            .zip(self.scrapes.iter().skip(1))
            .map(|((then, before), (now, after))| {
                let seconds = now.duration_since(*then).as_secs_f64().max(1e-3);
                let (before, after) = (sum(before), sum(after));
                let grown = if after >= before {
                    after - before
                } else {
                    after
                };
                grown / seconds
            })
            .collect()
    }
}

/// What there is to draw.
pub(super) enum Screen<'a> {
    Metrics(&'a History),
    /// The last scrape failed, with this error.
    Unreachable(String),
}

/// Bars for `values`, scaled to `max` (the larger series, so two lines
/// drawn with the same `max` compare at a glance).
fn sparkline(values: &[f64], max: f64, width: usize) -> String {
    let shown = &values[values.len().saturating_sub(width)..];
    shown
        .iter()
        .map(|value| {
            if max <= 0.0 {
                BARS[0]
            } else {
                let level = (value / max * (BARS.len() - 1) as f64).round() as usize;
                BARS[level.min(BARS.len() - 1)]
            }
        })
        .collect()
}

fn count(value: f64) -> String {
    format!("{}", value.round() as i64)
}

/// The screen as lines, each at most `width` characters, at most `height`
/// lines, separated by "\r\n" (raw mode does not turn "\n" into a new line).
pub(super) fn render(url: &str, screen: &Screen, width: usize, height: usize) -> String {
    let mut lines = vec![format!("churnstile top — {url} — q quits"), String::new()];
    match screen {
        Screen::Unreachable(error) => {
            lines.push(format!("cannot read the metrics: {error}"));
            lines.push("retrying every second".to_owned());
        }
        Screen::Metrics(history) => metrics_lines(history, width, &mut lines),
    }
    let mut text: Vec<String> = lines
        .into_iter()
        .take(height.max(1))
        .map(|line| line.chars().take(width).collect())
        .collect();
    // Title in reverse video.
    text[0] = format!("\x1b[7m{:width$}\x1b[0m", text[0]);
    text.join("\r\n")
}

fn metrics_lines(history: &History, width: usize, lines: &mut Vec<String>) {
    let Some(latest) = history.latest() else {
        return;
    };
    if latest.is_empty() {
        lines.push("the page has no metrics yet".to_owned());
        return;
    }
    let clients = history.rates(CLIENT_CONNECTIONS, None);
    let upstream = history.rates(UPSTREAM_OPENED, OPENED_OK);
    let now = |rates: &[f64]| rates.last().copied().unwrap_or(0.0);
    let max = clients.iter().chain(&upstream).copied().fold(0.0, f64::max);
    let spark_width = width.saturating_sub(34).min(KEEP - 1);
    lines.push(format!(
        "client connects/s   {:>9.1}  {}",
        now(&clients),
        sparkline(&clients, max, spark_width)
    ));
    lines.push(format!(
        "upstream connects/s {:>9.1}  {}",
        now(&upstream),
        sparkline(&upstream, max, spark_width)
    ));
    lines.push(format!(
        "reuse ratio         {:>9.1}  client logins per upstream connection opened",
        latest.sum(REUSE_RATIO)
    ));
    lines.push(format!(
        "transactions/s      {:>9.1}  queries/s {:.1}",
        now(&history.rates(TRANSACTIONS, None)),
        now(&history.rates(QUERIES, None)),
    ));
    let longest = latest
        .named(POOL_MAX_WAIT_SECONDS)
        .map(|sample| sample.value)
        .fold(0.0, f64::max);
    lines.push(format!(
        "clients {} connected, {} waiting (longest {longest:.2} s)",
        count(latest.sum(CLIENTS_CONNECTED)),
        count(latest.sum_where(POOL_CLIENTS, "state", "waiting")),
    ));
    lines.push(format!(
        "servers {} active, {} idle, {} logging in",
        count(latest.sum_where(UPSTREAM_CONNECTIONS, "state", "active")),
        count(latest.sum_where(UPSTREAM_CONNECTIONS, "state", "idle")),
        count(latest.sum_where(UPSTREAM_CONNECTIONS, "state", "login")),
    ));
    let pins: Vec<String> = latest
        .named(CLIENT_PINS)
        .filter(|sample| sample.value > 0.0)
        .map(|sample| {
            format!(
                "{} {}",
                sample.label("reason").unwrap_or("?"),
                count(sample.value)
            )
        })
        .collect();
    lines.push(format!(
        "pins    {} ({} pinned now)",
        if pins.is_empty() {
            "none".to_owned()
        } else {
            pins.join(", ")
        },
        count(latest.sum(CLIENTS_PINNED)),
    ));
    lines.push(String::new());
    for (name, label, what) in [
        (UPSTREAM_TIME_WAIT, "upstream", "TIME_WAIT toward upstream"),
        (LISTENER_TIME_WAIT, "listener", "TIME_WAIT on listener   "),
    ] {
        for sample in latest.named(name) {
            lines.push(format!(
                "{what} {:<22} {:>7}",
                sample.label(label).unwrap_or("?"),
                count(sample.value)
            ));
        }
    }
    lines.push(format!(
        "ephemeral ports used {} of {}; churnstile fds {} of {}",
        count(latest.sum(EPHEMERAL_PORTS_USED)),
        count(latest.sum(EPHEMERAL_PORTS)),
        count(latest.sum(OPEN_FDS)),
        count(latest.sum(MAX_FDS)),
    ));
    lines.push(String::new());
    lines.push(format!(
        "{:<28} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "pool", "cl_act", "cl_wait", "sv_act", "sv_idle", "reuse"
    ));
    for sample in latest.named(POOL_REUSE_RATIO) {
        let (Some(database), Some(user)) = (sample.label("database"), sample.label("user")) else {
            continue;
        };
        let pool_value = |name: &str, state: &str| {
            latest
                .named(name)
                .filter(|s| {
                    s.label("database") == Some(database)
                        && s.label("user") == Some(user)
                        && s.label("state") == Some(state)
                })
                .map(|s| s.value)
                .sum::<f64>()
        };
        let paused = latest.named(POOL_PAUSED).any(|s| {
            s.label("database") == Some(database) && s.label("user") == Some(user) && s.value > 0.0
        });
        lines.push(format!(
            "{:<28} {:>7} {:>7} {:>7} {:>7} {:>8.1}{}",
            format!("{database}/{user}"),
            count(pool_value(POOL_CLIENTS, "active") + pool_value(POOL_CLIENTS, "idle")),
            count(pool_value(POOL_CLIENTS, "waiting")),
            count(pool_value(UPSTREAM_CONNECTIONS, "active")),
            count(pool_value(UPSTREAM_CONNECTIONS, "idle")),
            sample.value,
            if paused { "  PAUSED" } else { "" }
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scrape(accepted: u64, opened: u64, waiting: u64) -> Samples {
        Samples::parse(&format!(
            "churnstile_client_connections_total {accepted}\n\
             churnstile_upstream_connections_opened_total{{database=\"app\",user=\"u\",protocol=\"postgres\",result=\"ok\"}} {opened}\n\
             churnstile_upstream_connections_opened_total{{database=\"app\",user=\"u\",protocol=\"postgres\",result=\"error\"}} 1000\n\
             churnstile_transactions_total{{database=\"app\",user=\"u\",protocol=\"postgres\"}} {}\n\
             churnstile_clients_pinned 2\n\
             churnstile_reuse_ratio {}\n\
             churnstile_pool_reuse_ratio{{database=\"app\",user=\"u\"}} 4\n\
             churnstile_pool_clients{{database=\"app\",user=\"u\",state=\"waiting\"}} {waiting}\n\
             churnstile_pool_clients{{database=\"app\",user=\"u\",state=\"active\"}} 2\n\
             churnstile_pool_paused{{database=\"app\",user=\"u\"}} 1\n\
             churnstile_client_pins_total{{reason=\"listen\"}} 3\n\
             churnstile_client_pins_total{{reason=\"load\"}} 0\n\
             churnstile_upstream_time_wait_sockets{{upstream=\"127.0.0.1:5432\"}} 17\n",
            accepted * 3,
            accepted as f64 / opened.max(1) as f64
        ))
    }

    fn history() -> History {
        history_from(Instant::now())
    }

    fn history_from(start: Instant) -> History {
        let mut history = History::default();
        history.record(start, scrape(100, 2, 0));
        history.record(start + Duration::from_secs(1), scrape(300, 2, 1));
        history.record(start + Duration::from_secs(2), scrape(700, 4, 3));
        history
    }

    #[test]
    fn rates_come_from_counter_differences() {
        let start = Instant::now();
        let history = history_from(start);
        assert_eq!(history.rates(CLIENT_CONNECTIONS, None), [200.0, 400.0]);
        assert_eq!(history.rates(UPSTREAM_OPENED, OPENED_OK), [0.0, 2.0]);
        let mut restarted = history;
        restarted.record(start + Duration::from_secs(3), scrape(5, 1, 0));
        assert_eq!(restarted.rates(CLIENT_CONNECTIONS, None)[2], 5.0);
    }

    #[test]
    fn sparklines_share_a_scale() {
        assert_eq!(sparkline(&[0.0, 200.0, 400.0], 400.0, 10), "▁▅█");
        assert_eq!(sparkline(&[0.0, 2.0], 400.0, 10), "▁▁");
        assert_eq!(sparkline(&[1.0, 2.0, 3.0], 3.0, 2), "▆█");
        assert_eq!(sparkline(&[], 0.0, 5), "");
    }

    #[test]
    fn the_screen_shows_rates_ratio_waiters_pins_and_time_wait() {
        let history = history();
        let text = render("http://h:1/metrics", &Screen::Metrics(&history), 100, 40);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert!(lines[0].starts_with("\x1b[7mchurnstile top — http://h:1/metrics — q quits"));
        assert!(
            lines.contains(&"client connects/s       400.0  ▅█"),
            "{text}"
        );
        assert!(
            lines.contains(&"upstream connects/s       2.0  ▁▁"),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("reuse ratio             175.0")),
            "{text}"
        );
        assert!(
            lines.contains(&"clients 0 connected, 3 waiting (longest 0.00 s)"),
            "{text}"
        );
        assert!(lines.contains(&"pins    listen 3 (2 pinned now)"), "{text}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("transactions/s         1200.0")),
            "{text}"
        );
        assert!(
            lines.iter().any(
                |l| l.starts_with("TIME_WAIT toward upstream 127.0.0.1:5432") && l.ends_with(" 17")
            ),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("app/u") && l.ends_with("4.0  PAUSED")),
            "{text}"
        );
    }

    #[test]
    fn the_screen_fits_the_terminal_and_reports_errors() {
        let text = render(
            "u",
            &Screen::Unreachable("connection refused".into()),
            20,
            3,
        );
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2], "cannot read the metr");
        assert!(text.lines().all(|line| !line.contains('\n')));
    }
}

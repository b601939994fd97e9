//! The doctor's report as text for a terminal: findings worst first (with
//! what they mean and what to do, unless all is well), then the tables
//! behind them.

use std::fmt::Write;

use super::endpoint_sockets::{Direction, EndpointSockets};
use super::ephemeral::EphemeralSummary;
use super::processes::ProcessUsage;
use super::report::{Severity, Status};
use super::run::Report;

/// Long lines wrap here, continuing under their text.
const WIDTH: usize = 100;
const INDENT: &str = "         ";

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&headline(report));
    out.push_str("\n\n");
    for finding in &report.findings {
        let label = format!("{:<8} ", finding.severity.label());
        let line = format!("{}: {}", finding.subject, finding.summary);
        out.push_str(&wrap(&label, &line));
        if finding.severity > Severity::Ok {
            out.push_str(&wrap(INDENT, &format!("means: {}", finding.meaning)));
            out.push_str(&wrap(INDENT, &format!("do:    {}", finding.action)));
        }
    }
    if let Some(ephemeral) = &report.ephemeral {
        out.push('\n');
        out.push_str(&ephemeral_section(ephemeral));
    }
    if !report.endpoints.is_empty() {
        out.push('\n');
        out.push_str(&endpoint_table(&report.endpoints, report.interval_seconds));
    }
    if !report.processes.is_empty() {
        out.push('\n');
        out.push_str(&process_table(&report.processes));
    }
    out
}

fn headline(report: &Report) -> String {
    let count = |severity: Severity| {
        report
            .findings
            .iter()
            .filter(|finding| finding.severity == severity)
            .count()
    };
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let verdict = match report.status {
        Status::Healthy => "healthy".to_owned(),
        Status::Warnings => plural(count(Severity::Warning), "warning"),
        Status::Problems => format!(
            "{}, {}",
            plural(count(Severity::Problem), "problem"),
            plural(count(Severity::Warning), "warning")
        ),
    };
    format!(
        "churnstile doctor: {verdict} (exit status {})",
        report.status.exit_code()
    )
}

fn ephemeral_section(ephemeral: &EphemeralSummary) -> String {
    let reserved = if ephemeral.reserved_ports.is_empty() {
        "none"
    } else {
        &ephemeral.reserved_ports
    };
    let reuse = match ephemeral.tcp_tw_reuse {
        0 => "off",
        1 => "on",
        2 => "loopback only",
        _ => "unknown value",
    };
    format!(
        "Ephemeral ports: {}-{} ({} usable), reserved: {reserved}, tcp_tw_reuse = {} ({reuse})\n  \
         TIME_WAIT lasts {} s, so one destination sustains {:.1} new connections per second\n",
        ephemeral.port_range[0],
        ephemeral.port_range[1],
        ephemeral.available_ports,
        ephemeral.tcp_tw_reuse,
        ephemeral.time_wait_seconds,
        ephemeral.sustainable_connects_per_second
    )
}

fn endpoint_table(endpoints: &[EndpointSockets], interval: Option<f64>) -> String {
    let mut out = format!("Sockets by endpoint (top {})\n", endpoints.len());
    let rate_header = if interval.is_some() { "new/s" } else { "" };
    let _ = writeln!(
        out,
        "  {:<9} {:<40} {:>6} {:>9} {:>7}  states",
        "direction", "endpoint", "total", "ephemeral", rate_header
    );
    for row in endpoints {
        let direction = match row.direction {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        };
        let share = row
            .ephemeral_use_percent
            .map_or_else(|| "-".to_owned(), |percent| format!("{percent:.1}%"));
        let rate = row
            .observed_connects_per_second
            .map_or_else(String::new, |rate| format!("{rate:.1}"));
        let mut states: Vec<(&&str, &usize)> = row.states.iter().collect();
        states.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let states: Vec<String> = states
            .iter()
            .map(|(state, count)| format!("{state} {count}"))
            .collect();
        let _ = writeln!(
            out,
            "  {direction:<9} {:<40} {:>6} {share:>9} {rate:>7}  {}",
            row.endpoint.to_string(),
            row.total,
            states.join(", ")
        );
    }
    out
}

fn process_table(processes: &[ProcessUsage]) -> String {
    let mut out = format!("Processes (top {})\n", processes.len());
    let _ = writeln!(
        out,
        "  {:>8} {:>7} {:>8} {:>6} {:>10} {:>12}  command",
        "pid", "fds", "limit", "use", "CLOSE_WAIT", "unidentified"
    );
    for row in processes {
        let limit = row
            .fd_soft_limit
            .map_or_else(|| "none".to_owned(), |limit| limit.to_string());
        let share = row
            .fd_use_percent
            .map_or_else(|| "-".to_owned(), |percent| format!("{percent:.0}%"));
        let _ = writeln!(
            out,
            "  {:>8} {:>7} {limit:>8} {share:>6} {:>10} {:>12}  {}",
            row.pid, row.open_fds, row.close_wait, row.unidentified_sockets, row.command
        );
    }
    out
}

/// `first` then `text`, wrapped at spaces to [`WIDTH`], continuation lines
/// indented to line up under the text.
fn wrap(first: &str, text: &str) -> String {
    let indent = " ".repeat(first.chars().count());
    let mut out = String::new();
    let mut line = first.to_owned();
    let mut line_has_words = false;
    for word in text.split(' ') {
        if line_has_words && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.clone();
            line_has_words = false;
        }
        if line_has_words {
            line.push(' ');
        }
        line.push_str(word);
        line_has_words = true;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::{Finding, JSON_VERSION};

    fn finding(severity: Severity, summary: &str) -> Finding {
        Finding {
            severity,
            check: "listen.in_use",
            subject: "listen 127.0.0.1:6432".into(),
            summary: summary.into(),
            meaning: "churnstile cannot listen here".into(),
            action: "stop pid 42".into(),
        }
    }

    fn report(findings: Vec<Finding>) -> Report {
        Report {
            version: JSON_VERSION,
            status: Status::of(&findings),
            findings,
            listen: Vec::new(),
            ephemeral: None,
            interval_seconds: None,
            endpoints: Vec::new(),
            processes: Vec::new(),
            databases: Vec::new(),
        }
    }

    #[test]
    fn problems_say_what_they_mean_and_what_to_do() {
        let text = render(&report(vec![
            finding(Severity::Problem, "in use by pid 42 \"python3\""),
            finding(Severity::Ok, "free"),
        ]));
        assert_eq!(
            text,
            "churnstile doctor: 1 problem, 0 warnings (exit status 2)\n\
             \n\
             PROBLEM  listen 127.0.0.1:6432: in use by pid 42 \"python3\"\n\
             \x20        means: churnstile cannot listen here\n\
             \x20        do:    stop pid 42\n\
             ok       listen 127.0.0.1:6432: free\n"
        );
        assert!(
            render(&report(Vec::new())).starts_with("churnstile doctor: healthy (exit status 0)")
        );
    }

    #[test]
    fn long_lines_wrap_under_their_text() {
        let words = vec!["word"; 40].join(" ");
        let wrapped = wrap("do:    ", &words);
        let lines: Vec<&str> = wrapped.lines().collect();
        assert!(lines.len() > 1);
        assert!(
            lines.iter().all(|line| line.chars().count() <= WIDTH),
            "{wrapped}"
        );
        assert!(lines[1].starts_with("       word"));
        assert_eq!(wrapped.split_whitespace().count(), 41);
    }

    #[test]
    fn process_rows_line_up() {
        let table = process_table(&[ProcessUsage {
            pid: 4242,
            command: "python3 server.py".into(),
            open_fds: 12,
            fd_soft_limit: Some(1024),
            fd_use_percent: Some(1.2),
            close_wait: 5,
            unidentified_sockets: 0,
        }]);
        assert_eq!(
            table,
            "Processes (top 1)\n\
             \x20      pid     fds    limit    use CLOSE_WAIT unidentified  command\n\
             \x20     4242      12     1024     1%          5            0  python3 server.py\n"
        );
    }
}

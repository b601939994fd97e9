//! Verdicts on each outbound destination's ephemeral ports: source ports
//! held against the range, and new connections per second against what
//! TIME_WAIT sustains, each with what it means and what to do.

use super::endpoint_sockets::{Destination, EndpointSockets, percent};
use super::report::{Finding, Severity};
use crate::host::{EphemeralPorts, TIME_WAIT};

/// Share of the ephemeral range held toward one destination that warns.
const WARN_USE: f64 = 0.5;
/// Share that is a problem: the next burst fails.
const PROBLEM_USE: f64 = 0.9;
/// Share of the sustainable connect rate that warns.
const WARN_RATE: f64 = 0.5;

/// A finding for each destination under pressure, or one that all is calm.
pub(super) fn judge(destinations: &[Destination], settings: &EphemeralPorts) -> Vec<Finding> {
    let mut findings = Vec::new();
    for destination in destinations {
        findings.extend(port_finding(destination, settings));
        findings.extend(rate_finding(destination.row, settings));
    }
    if findings.is_empty() {
        findings.push(calm_finding(destinations, settings));
    }
    findings
}

fn port_finding(destination: &Destination, settings: &EphemeralPorts) -> Option<Finding> {
    let row = destination.row;
    let held = destination.held_ports;
    let available = settings.available();
    let share = held as f64 / f64::from(available);
    let severity = if share >= PROBLEM_USE {
        Severity::Problem
    } else if share >= WARN_USE {
        Severity::Warning
    } else {
        return None;
    };
    let in_use = row.ephemeral_ports_in_use.unwrap_or(held);
    let time_wait = row.states.get("TIME_WAIT").copied().unwrap_or(0);
    let reuse_note = if settings.tw_reuse_applies(row.endpoint.ip()) {
        format!(
            "; tcp_tw_reuse lets connect() take TIME_WAIT ports again, {held} ports are held by \
             live connections"
        )
    } else {
        String::new()
    };
    Some(Finding {
        severity,
        check: "ephemeral.ports",
        subject: format!("toward {}", row.endpoint),
        summary: format!(
            "{in_use} of {available} ephemeral ports in use ({:.1}%), {time_wait} sockets in \
             TIME_WAIT{reuse_note}",
            percent(in_use, available)
        ),
        meaning: exhaustion_meaning(),
        action: churn_action(),
    })
}

fn rate_finding(row: &EndpointSockets, settings: &EphemeralPorts) -> Option<Finding> {
    let rate = row.observed_connects_per_second?;
    // With tcp_tw_reuse, TIME_WAIT does not bound the rate.
    if settings.tw_reuse_applies(row.endpoint.ip()) {
        return None;
    }
    let sustainable = settings.sustainable_rate();
    let severity = if rate >= sustainable {
        Severity::Problem
    } else if rate >= WARN_RATE * sustainable {
        Severity::Warning
    } else {
        return None;
    };
    Some(Finding {
        severity,
        check: "ephemeral.rate",
        subject: format!("toward {}", row.endpoint),
        summary: format!(
            "{rate:.1} new connections per second; TIME_WAIT sustains {sustainable:.1} \
             ({} ports / {} s)",
            settings.available(),
            TIME_WAIT.as_secs()
        ),
        meaning: format!(
            "{} Above the sustainable rate the free ports drain; near it, a burst or a slow \
             server tips it over.",
            exhaustion_meaning()
        ),
        action: churn_action(),
    })
}

fn exhaustion_meaning() -> String {
    format!(
        "every connection to one destination needs its own source port, and a closed one keeps \
         it for {} s in TIME_WAIT on the side that closed first; when none is left, connect() \
         fails with EADDRNOTAVAIL (\"Cannot assign requested address\") for every program on \
         this host that talks to it.",
        TIME_WAIT.as_secs()
    )
}

fn churn_action() -> String {
    "point the clients that open a connection per request at churnstile, which keeps a fixed \
     set of connections upstream (over its Unix socket, clients on this host leave no TIME_WAIT \
     at all); meanwhile `sysctl -w net.ipv4.tcp_tw_reuse=1` lets connect() reuse TIME_WAIT \
     ports, and a wider net.ipv4.ip_local_port_range gives more (reserve listen ports first)"
        .to_owned()
}

fn calm_finding(destinations: &[Destination], settings: &EphemeralPorts) -> Finding {
    let busiest = destinations.iter().map(|d| d.row).max_by_key(|row| {
        (
            row.ephemeral_ports_in_use.unwrap_or(0),
            std::cmp::Reverse(row.endpoint),
        )
    });
    let summary = match busiest {
        Some(row) => format!(
            "at most {} of {} ephemeral ports in use toward one destination ({})",
            row.ephemeral_ports_in_use.unwrap_or(0),
            settings.available(),
            row.endpoint
        ),
        None => "no outbound TCP connections".to_owned(),
    };
    Finding {
        severity: Severity::Ok,
        check: "ephemeral.ports",
        subject: "ephemeral ports".to_owned(),
        summary,
        meaning: format!(
            "far from the point where connect() fails with EADDRNOTAVAIL; toward one destination \
             {:.1} new connections per second can be sustained (TIME_WAIT lasts {} s)",
            settings.sustainable_rate(),
            TIME_WAIT.as_secs()
        ),
        action: "nothing to do".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::endpoint_sockets::Direction;
    use std::collections::BTreeMap;

    /// 10 ephemeral ports, 40000-40009.
    fn settings(tw_reuse: &str) -> EphemeralPorts {
        EphemeralPorts::parse("40000 40009", "", tw_reuse).unwrap()
    }

    fn row(in_use: usize, time_wait: usize, rate: Option<f64>) -> EndpointSockets {
        EndpointSockets {
            direction: Direction::Outbound,
            endpoint: "10.0.0.5:5432".parse().unwrap(),
            total: in_use,
            states: BTreeMap::from([("TIME_WAIT", time_wait)]),
            ephemeral_ports_in_use: Some(in_use),
            ephemeral_use_percent: None,
            tcp_tw_reuse_applies: None,
            observed_connects_per_second: rate,
        }
    }

    fn judged(row: &EndpointSockets, held_ports: usize, tw_reuse: &str) -> Vec<Finding> {
        judge(&[Destination { row, held_ports }], &settings(tw_reuse))
    }

    #[test]
    fn ports_warn_at_half_and_fail_at_nine_tenths() {
        for (held, expected) in [
            (4, Severity::Ok),
            (5, Severity::Warning),
            (9, Severity::Problem),
        ] {
            let findings = judged(&row(held, held, None), held, "0");
            assert_eq!(findings.len(), 1, "{findings:?}");
            assert_eq!(findings[0].check, "ephemeral.ports");
            assert_eq!(findings[0].severity, expected, "{held} held");
        }
        let findings = judged(&row(9, 9, None), 9, "0");
        assert_eq!(findings[0].subject, "toward 10.0.0.5:5432");
        assert_eq!(
            findings[0].summary,
            "9 of 10 ephemeral ports in use (90.0%), 9 sockets in TIME_WAIT"
        );
        assert!(findings[0].meaning.contains("EADDRNOTAVAIL"));
        assert!(findings[0].action.contains("tcp_tw_reuse=1"));
    }

    #[test]
    fn reusable_time_wait_ports_do_not_count() {
        // 9 in use, 8 of them in TIME_WAIT that tcp_tw_reuse=1 can take back.
        let findings = judged(&row(9, 8, None), 1, "1");
        assert_eq!(findings[0].severity, Severity::Ok);
        let findings = judged(&row(9, 0, None), 9, "1");
        assert_eq!(findings[0].severity, Severity::Problem);
        assert!(
            findings[0]
                .summary
                .ends_with("9 ports are held by live connections"),
            "{}",
            findings[0].summary
        );
    }

    #[test]
    fn rates_against_what_time_wait_sustains() {
        // 10 ports / 60 s sustain 0.17 new connections per second.
        for (rate, tw_reuse, expected) in [
            (0.05, "0", None),
            (0.1, "0", Some(Severity::Warning)),
            (0.5, "0", Some(Severity::Problem)),
            (0.5, "1", None),
        ] {
            let findings = judged(&row(1, 0, Some(rate)), 1, tw_reuse);
            let rate_finding = findings.iter().find(|f| f.check == "ephemeral.rate");
            assert_eq!(
                rate_finding.map(|f| f.severity),
                expected,
                "{rate}/s reuse={tw_reuse}"
            );
        }
        let findings = judged(&row(1, 0, Some(0.5)), 1, "0");
        assert_eq!(
            findings[0].summary,
            "0.5 new connections per second; TIME_WAIT sustains 0.2 (10 ports / 60 s)"
        );
    }

    #[test]
    fn calm_names_the_busiest_destination() {
        let findings = judged(&row(3, 3, None), 3, "0");
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity, Severity::Ok);
        assert_eq!(
            findings[0].summary,
            "at most 3 of 10 ephemeral ports in use toward one destination (10.0.0.5:5432)"
        );
        let none = judge(&[], &settings("0"));
        assert_eq!(none[0].summary, "no outbound TCP connections");
    }
}

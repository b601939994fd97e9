//! The vocabulary every doctor check speaks: a [`Finding`] (its severity,
//! what it means and what to do), the overall [`Status`] and exit code, and
//! the version of the JSON layout (`--json`). It imports no check, so every
//! check can import it.

use serde::Serialize;

/// Version of the JSON layout; bumped only when a field changes meaning or
/// goes away (new fields may appear without a bump).
pub(super) const JSON_VERSION: u32 = 1;

/// How much a finding matters, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    /// Checked and fine.
    Ok,
    /// Worth knowing; nothing to fix.
    Info,
    /// Works now, fails under more load or on the next restart.
    Warning,
    /// Fails now.
    Problem,
}

impl Severity {
    pub(super) fn label(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "WARNING",
            Severity::Problem => "PROBLEM",
        }
    }
}

/// One verdict, phrased for the person who has to act on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Finding {
    pub(crate) severity: Severity,
    /// Stable identifier of the check, e.g. `listen.in_use`.
    pub(crate) check: &'static str,
    /// What was checked: `listen 127.0.0.1:6432`, `pid 42 "app"`, ...
    pub(crate) subject: String,
    /// What was found.
    pub(crate) summary: String,
    /// What it means for clients and churnstile.
    pub(crate) meaning: String,
    /// What to do about it.
    pub(crate) action: String,
}

/// The overall verdict: the worst severity found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Warnings,
    Problems,
}

impl Status {
    pub(super) fn of(findings: &[Finding]) -> Status {
        match findings.iter().map(|finding| finding.severity).max() {
            Some(Severity::Problem) => Status::Problems,
            Some(Severity::Warning) => Status::Warnings,
            _ => Status::Healthy,
        }
    }

    /// 0 healthy, 1 warnings, 2 problems.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Healthy => 0,
            Status::Warnings => 1,
            Status::Problems => 2,
        }
    }
}

/// Orders findings worst first, keeping the order of the checks otherwise.
pub(super) fn worst_first(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Severity, check: &'static str) -> Finding {
        Finding {
            severity,
            check,
            subject: String::new(),
            summary: String::new(),
            meaning: String::new(),
            action: String::new(),
        }
    }

    #[test]
    fn status_and_exit_code_follow_the_worst_finding() {
        let cases = [
            (vec![], Status::Healthy, 0),
            (vec![Severity::Ok, Severity::Info], Status::Healthy, 0),
            (vec![Severity::Ok, Severity::Warning], Status::Warnings, 1),
            (
                vec![Severity::Warning, Severity::Problem, Severity::Info],
                Status::Problems,
                2,
            ),
        ];
        for (severities, status, code) in cases {
            let findings: Vec<Finding> = severities
                .iter()
                .map(|&severity| finding(severity, "x"))
                .collect();
            assert_eq!(Status::of(&findings), status, "{severities:?}");
            assert_eq!(status.exit_code(), code);
        }
    }

    #[test]
    fn worst_first_keeps_check_order_within_a_severity() {
        let findings = worst_first(vec![
            finding(Severity::Ok, "a"),
            finding(Severity::Warning, "b"),
            finding(Severity::Problem, "c"),
            finding(Severity::Warning, "d"),
        ]);
        let order: Vec<&str> = findings.iter().map(|finding| finding.check).collect();
        assert_eq!(order, ["c", "b", "d", "a"]);
    }

    #[test]
    fn json_spells_severities_and_status_in_lowercase() {
        let json = serde_json::to_value(finding(Severity::Problem, "listen.in_use")).unwrap();
        assert_eq!(json["severity"], "problem");
        assert_eq!(json["check"], "listen.in_use");
        assert_eq!(serde_json::to_value(Status::Warnings).unwrap(), "warnings");
    }
}

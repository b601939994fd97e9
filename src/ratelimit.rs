//! Rate limiting for warnings that repeat in bursts (an upstream down, a
//! pool exhausted, accept failing): at most one line per kind and subject
//! every [`WARNING_INTERVAL`], the next one saying how many were held back,
//! so an outage is visible without drowning the log.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// At most one warning of a kind about a subject this often.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Subjects remembered before stale ones are forgotten.
const MAX_KEYS: usize = 1024;

/// The limiter for churnstile's repeated warnings.
pub static WARNINGS: LazyLock<LogLimiter> = LazyLock::new(|| LogLimiter::new(WARNING_INTERVAL));

/// Decides which lines of a repeated warning are written.
#[derive(Debug)]
pub struct LogLimiter {
    every: Duration,
    keys: Mutex<HashMap<(&'static str, String), Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    logged_at: Instant,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(every: Duration) -> Self {
        LogLimiter {
            every,
            keys: Mutex::default(),
        }
    }

    /// `Some(k)` when the warning `kind` about `subject` should be written
    /// now, `k` being how many were held back since the last one written;
    /// `None` when it should be held back.
    pub fn check(&self, kind: &'static str, subject: &str) -> Option<u64> {
        self.check_at(kind, subject, Instant::now())
    }

    fn check_at(&self, kind: &'static str, subject: &str, now: Instant) -> Option<u64> {
        // A panic while holding the map leaves it usable.
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let key = (kind, subject.to_owned());
        if let Some(entry) = keys.get_mut(&key) {
            if now.saturating_duration_since(entry.logged_at) < self.every {
                entry.suppressed += 1;
                return None;
            }
            let suppressed = entry.suppressed;
            *entry = Entry {
                logged_at: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if keys.len() >= MAX_KEYS {
            let every = self.every;
            keys.retain(|_, entry| now.saturating_duration_since(entry.logged_at) < every);
        }
        keys.insert(
            key,
            Entry {
                logged_at: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

/// Appended to a warning: ` (suppressed K similar)`, or nothing when none were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppressed(pub u64);

impl fmt::Display for Suppressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            count => write!(f, " (suppressed {count} similar)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_subject_per_interval_then_the_count_held_back() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        assert_eq!(limiter.check_at("down", "db1", at(0)), Some(0));
        assert_eq!(limiter.check_at("down", "db1", at(1)), None);
        assert_eq!(limiter.check_at("down", "db1", at(9)), None);
        assert_eq!(
            limiter.check_at("down", "db2", at(9)),
            Some(0),
            "another subject"
        );
        assert_eq!(
            limiter.check_at("full", "db1", at(9)),
            Some(0),
            "another kind"
        );
        assert_eq!(limiter.check_at("down", "db1", at(10)), Some(2));
        assert_eq!(limiter.check_at("down", "db1", at(11)), None);
        assert_eq!(limiter.check_at("down", "db1", at(25)), Some(1));
        assert_eq!(limiter.check_at("down", "db1", at(40)), Some(0));
    }

    #[test]
    fn stale_subjects_are_forgotten_when_many() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let start = Instant::now();
        for index in 0..MAX_KEYS {
            assert_eq!(limiter.check_at("x", &index.to_string(), start), Some(0));
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(limiter.check_at("x", "new", later), Some(0));
        assert_eq!(limiter.keys.lock().unwrap().len(), 1);
    }

    #[test]
    fn the_suffix_names_the_count() {
        assert_eq!(format!("failed{}", Suppressed(0)), "failed");
        assert_eq!(
            format!("failed{}", Suppressed(7)),
            "failed (suppressed 7 similar)"
        );
    }
}

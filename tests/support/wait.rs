//! Bounded polling for what happens some time after a test acts: a server
//! backend appears or goes, statistics catch up, a port stops accepting.
//! Each wait fails the test, saying what it waited for, once its time is up.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How long to sleep between two looks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `condition` until it holds; panics naming `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `probe` until it returns `expected`; after `timeout`, panics
/// naming `what` and the value it returned last.
pub async fn until_equal<T: PartialEq + Debug>(
    what: &str,
    timeout: Duration,
    expected: T,
    mut probe: impl AsyncFnMut() -> T,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = probe().await;
        if seen == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {seen:?}, not {expected:?}, after {timeout:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `probe` until it returns `Ok`, and returns that value; after
/// `timeout`, panics naming `what` and the last `Err`, which says what was
/// seen instead.
pub async fn poll_until<T, Seen: Debug>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, Seen>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; last saw {seen:?}"
            ),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

//! The `stats:` log line PgBouncer operators read, written every
//! `stats_period` for each database that has pools: transactions and
//! queries per second, bytes per second in and out, and the average
//! transaction and wait times over the period, from the pools' counters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pool::PoolStatsSnapshot;
use crate::proxy::Proxy;

/// Writes each database's `stats:` line every `stats_period` until the
/// process exits; a zero period writes none.
pub fn spawn(proxy: Arc<Proxy>) {
    let period = proxy.config.load().general.observe.stats_period;
    if period.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut before = (Instant::now(), per_database(&proxy));
        loop {
            ticker.tick().await;
            let now = (Instant::now(), per_database(&proxy));
            let elapsed = now.0.duration_since(before.0);
            for (database, stats) in &now.1 {
                let earlier = before.1.get(database).copied().unwrap_or_default();
                tracing::info!(db = %database, "{}", stats_line(&earlier, stats, elapsed));
            }
            before = now;
        }
    });
}

/// Every pool's counters added up per database.
fn per_database(proxy: &Proxy) -> BTreeMap<String, PoolStatsSnapshot> {
    let mut databases: BTreeMap<String, PoolStatsSnapshot> = BTreeMap::new();
    for pool in proxy.pools() {
        let stats = pool.control.stats();
        databases
            .entry(pool.database.to_owned())
            .and_modify(|sum| *sum = sum.merged(&stats))
            .or_insert(stats);
    }
    databases
}

/// PgBouncer's wording: rates over `elapsed`, averages over the period's
/// transactions (xact) and checkouts (wait).
fn stats_line(before: &PoolStatsSnapshot, now: &PoolStatsSnapshot, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    let rate = |later: u64, earlier: u64| (later.saturating_sub(earlier) as f64 / seconds).round();
    let average = |time: Duration, earlier: Duration, count: u64| {
        let micros = time.saturating_sub(earlier).as_micros();
        if count == 0 {
            0
        } else {
            micros / u128::from(count)
        }
    };
    let (t, b) = (&now.traffic, &before.traffic);
    let transactions = t.transactions.saturating_sub(b.transactions);
    let checkouts = now.checkouts.saturating_sub(before.checkouts);
    format!(
        "stats: {} xacts/s, {} queries/s, in {} B/s, out {} B/s, xact {} us, wait {} us",
        rate(t.transactions, b.transactions),
        rate(t.queries, b.queries),
        rate(t.bytes_received, b.bytes_received),
        rate(t.bytes_sent, b.bytes_sent),
        average(t.transaction_time, b.transaction_time, transactions),
        average(now.wait_time, before.wait_time, checkouts),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Traffic;

    #[test]
    fn a_period_reads_as_pgbouncer_writes_it() {
        let before = PoolStatsSnapshot {
            checkouts: 10,
            wait_time: Duration::from_micros(1_000),
            traffic: Traffic {
                transactions: 10,
                queries: 20,
                transaction_time: Duration::from_micros(5_000),
                bytes_received: 1_000,
                bytes_sent: 2_000,
            },
            ..PoolStatsSnapshot::default()
        };
        let now = PoolStatsSnapshot {
            checkouts: 30,
            wait_time: Duration::from_micros(3_000),
            traffic: Traffic {
                transactions: 30,
                queries: 60,
                transaction_time: Duration::from_micros(9_000),
                bytes_received: 5_000,
                bytes_sent: 10_000,
            },
            ..PoolStatsSnapshot::default()
        };
        assert_eq!(
            stats_line(&before, &now, Duration::from_secs(2)),
            "stats: 10 xacts/s, 20 queries/s, in 2000 B/s, out 4000 B/s, xact 200 us, wait 100 us"
        );
        assert_eq!(
            stats_line(&now, &now, Duration::from_secs(2)),
            "stats: 0 xacts/s, 0 queries/s, in 0 B/s, out 0 B/s, xact 0 us, wait 0 us"
        );
    }
}

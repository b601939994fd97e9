//! Micro-benchmarks of the per-message and per-client hot paths: scanning a
//! forwarded result stream for message boundaries, a pool checkout and
//! release with no contention, and the SQL analysis of a plain query.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use churnstile::pool::{Connector, Pool, PoolLimits};
use churnstile::postgres::backend::ServerState;
use churnstile::postgres::wire::codec::{MessageScanner, Verdict};

fn main() {
    divan::main();
}

/// 1,000 DataRow messages of `row_len` bytes followed by ReadyForQuery.
fn result_stream(row_len: usize) -> Vec<u8> {
    let mut stream = Vec::new();
    for _ in 0..1000 {
        stream.push(b'D');
        stream.extend_from_slice(&(row_len as u32 + 4).to_be_bytes());
        stream.extend(std::iter::repeat_n(7u8, row_len));
    }
    stream.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
    stream
}

#[divan::bench(args = [16, 256, 4096])]
fn scan_result_stream(bencher: divan::Bencher, row_len: usize) {
    let stream = result_stream(row_len);
    bencher
        .counter(divan::counter::BytesCount::new(stream.len()))
        .bench(|| {
            let mut scanner = MessageScanner::default();
            let mut out = bytes::BytesMut::with_capacity(stream.len());
            let scanned = scanner
                .scan(
                    divan::black_box(&stream),
                    ServerState::framing,
                    &mut out,
                    |_, _, _| Verdict::Forward,
                )
                .unwrap();
            assert_eq!(scanned.consumed, stream.len());
            out.clear();
        });
}

struct Instant;

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Connector for Instant {
    type Conn = usize;
    type Error = Never;

    async fn connect(&self) -> Result<usize, Never> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Ok(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    fn is_healthy(&self, _conn: &mut usize) -> bool {
        true
    }

    fn close(&self, _conn: usize) {}

    fn is_transient(&self, _error: &Never) -> bool {
        false
    }
}

#[divan::bench]
fn pool_checkout_release(bencher: divan::Bencher) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = runtime.block_on(async {
        Arc::new(Pool::new(
            Instant,
            PoolLimits {
                max_size: 4,
                min_size: 0,
                lifetime: Duration::from_secs(3600),
                idle_timeout: None,
                connect_timeout: Duration::from_secs(1),
            },
        ))
    });
    bencher.bench_local(|| {
        runtime.block_on(async {
            pool.checkout(None).await.unwrap().release();
        })
    });
}

/// The SQL analysis every Parse and Query goes through under transaction
/// pooling, for pgbench's select-only query (which it leaves alone).
#[divan::bench]
fn analyze_plain_select() -> churnstile::postgres::sql::Analysis {
    churnstile::postgres::sql::analyze(divan::black_box(
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
    ))
}

//! Behaviour of the pool on its own, with an in-memory connector that counts
//! what it opens and closes (the database itself is exercised by tests/).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

mod backoff;

#[derive(Default)]
struct Counting {
    opened: AtomicUsize,
    closed: AtomicUsize,
    fail: AtomicBool,
    hang: AtomicBool,
    /// Connect attempts, failed or not.
    attempts: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

struct Conn {
    id: usize,
    healthy: bool,
}

impl Connector for Arc<Counting> {
    type Conn = Conn;
    type Error = Refused;

    async fn connect(&self) -> Result<Conn, Refused> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(Refused);
        }
        let id = self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(Conn { id, healthy: true })
    }

    fn is_healthy(&self, conn: &mut Conn) -> bool {
        conn.healthy
    }

    fn close(&self, _conn: Conn) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }

    fn is_transient(&self, _error: &Refused) -> bool {
        true
    }
}

fn limits(max_size: usize) -> PoolLimits {
    PoolLimits {
        max_size,
        min_size: 0,
        lifetime: Duration::from_secs(3600),
        idle_timeout: None,
        connect_timeout: Duration::from_secs(5),
    }
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("condition not reached within 5 s");
}

#[tokio::test]
async fn reuses_one_connection_for_sequential_clients() {
    let connector = Arc::new(Counting::default());
    let pool = Pool::new(Arc::clone(&connector), limits(4));
    for _ in 0..100 {
        let conn = pool.checkout(None).await.unwrap();
        conn.release();
    }
    assert_eq!(connector.opened.load(Ordering::SeqCst), 1);
    let stats = pool.stats();
    assert_eq!((stats.opened, stats.checkouts, stats.open), (1, 100, 1));
}

#[tokio::test]
async fn never_opens_more_than_max_size() {
    let connector = Arc::new(Counting::default());
    let pool = Pool::new(Arc::clone(&connector), limits(3));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let conn = pool.checkout(None).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
            conn.release();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(connector.opened.load(Ordering::SeqCst), 3);
    assert_eq!(pool.stats().checkouts, 50);
}

#[tokio::test]
async fn waiters_are_served_first_come_first_served() {
    let pool = Pool::new(Arc::new(Counting::default()), limits(1));
    let held = pool.checkout(None).await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for index in 0..20 {
        let (pool2, order2) = (pool.clone(), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let conn = pool2.checkout(None).await.unwrap();
            order2.lock().unwrap().push(index);
            tokio::task::yield_now().await;
            conn.release();
        }));
        wait_until(|| pool.stats().waiting == index + 1).await;
    }
    held.release();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_late_client_does_not_overtake_waiters() {
    let pool = Pool::new(Arc::new(Counting::default()), limits(1));
    let held = pool.checkout(None).await.unwrap();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let early = tokio::spawn({
        let pool = pool.clone();
        async move {
            let conn = pool.checkout(None).await.unwrap();
            done_rx.await.unwrap();
            conn.release();
        }
    });
    wait_until(|| pool.stats().waiting == 1).await;
    held.release();
    let late = pool.checkout(Some(Duration::from_millis(50))).await;
    assert!(
        matches!(late, Err(CheckoutError::WaitTimeout(_))),
        "the connection went to the late client, not the waiting one"
    );
    done_tx.send(()).unwrap();
    early.await.unwrap();
    pool.checkout(Some(Duration::from_secs(1)))
        .await
        .unwrap()
        .release();
}

#[tokio::test]
async fn wait_timeout_gives_a_clean_error() {
    let pool = Pool::new(Arc::new(Counting::default()), limits(1));
    let _held = pool.checkout(None).await.unwrap();
    let error = pool
        .checkout(Some(Duration::from_millis(50)))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, CheckoutError::WaitTimeout(_)));
    assert_eq!(pool.stats().wait_timeouts, 1);
    assert_eq!(pool.stats().waiting, 0);
}

#[tokio::test]
async fn failing_and_hanging_upstreams_return_errors_and_free_the_slot() {
    let connector = Arc::new(Counting::default());
    let mut pool_limits = limits(1);
    pool_limits.connect_timeout = Duration::from_millis(50);
    let pool = Pool::new(Arc::clone(&connector), pool_limits);
    connector.fail.store(true, Ordering::SeqCst);
    assert!(matches!(
        pool.checkout(None).await.err().unwrap(),
        CheckoutError::Connect(_)
    ));
    connector.fail.store(false, Ordering::SeqCst);
    connector.hang.store(true, Ordering::SeqCst);
    assert!(matches!(
        pool.checkout(None).await.err().unwrap(),
        CheckoutError::ConnectTimeout(_)
    ));
    connector.hang.store(false, Ordering::SeqCst);
    pool.checkout(None)
        .await
        .expect("the permit was given back")
        .release();
    assert_eq!(pool.stats().connect_failures, 2);
}

#[tokio::test]
async fn dropped_or_unhealthy_connections_are_closed_not_reused() {
    let connector = Arc::new(Counting::default());
    let pool = Pool::new(Arc::clone(&connector), limits(2));
    drop(pool.checkout(None).await.unwrap());
    assert_eq!(connector.closed.load(Ordering::SeqCst), 1);
    let mut conn = pool.checkout(None).await.unwrap();
    conn.conn().healthy = false;
    conn.release();
    let mut next = pool.checkout(None).await.unwrap();
    assert_eq!(next.conn().id, 2, "unhealthy idle connection skipped");
    assert!(!next.was_reused());
    next.discard(CloseReason::ResetFailure);
    let stats = pool.stats();
    assert_eq!(stats.open, 0);
    assert_eq!(stats.closed_for(CloseReason::Abandoned), 1, "dropped");
    assert_eq!(stats.closed_for(CloseReason::Error), 1, "unhealthy");
    assert_eq!(stats.closed_for(CloseReason::ResetFailure), 1, "discarded");
    assert_eq!(stats.closed(), 3);
}

#[tokio::test]
async fn server_lifetime_closes_old_connections_on_release() {
    let connector = Arc::new(Counting::default());
    let mut pool_limits = limits(1);
    pool_limits.lifetime = Duration::ZERO;
    let pool = Pool::new(Arc::clone(&connector), pool_limits);
    for _ in 0..3 {
        pool.checkout(None).await.unwrap().release();
    }
    assert_eq!(connector.opened.load(Ordering::SeqCst), 3);
    assert_eq!(connector.closed.load(Ordering::SeqCst), 3);
    assert_eq!(pool.stats().closed_for(CloseReason::Lifetime), 3);
}

#[tokio::test]
async fn janitor_reaps_idle_connections_and_keeps_min_size() {
    let connector = Arc::new(Counting::default());
    let mut pool_limits = limits(4);
    pool_limits.min_size = 2;
    pool_limits.idle_timeout = Some(Duration::from_millis(100));
    let pool = Pool::new(Arc::clone(&connector), pool_limits);
    wait_until(|| pool.idle_count() == 2).await;
    let held: Vec<_> = futures_checkouts(&pool, 4).await;
    for conn in held {
        conn.release();
    }
    assert_eq!(pool.idle_count(), 4);
    wait_until(|| pool.idle_count() == 2).await;
    assert_eq!(pool.stats().open, 2);
    assert_eq!(connector.opened.load(Ordering::SeqCst), 4);
    assert_eq!(pool.stats().closed_for(CloseReason::Idle), 2);
}

async fn futures_checkouts(pool: &Pool<Arc<Counting>>, count: usize) -> Vec<Lease<Arc<Counting>>> {
    let mut held = Vec::new();
    for _ in 0..count {
        held.push(pool.checkout(None).await.unwrap());
    }
    held
}

#[tokio::test]
async fn close_refuses_new_checkouts_and_closes_idle() {
    let connector = Arc::new(Counting::default());
    let pool = Pool::new(Arc::clone(&connector), limits(2));
    pool.checkout(None).await.unwrap().release();
    pool.close();
    assert_eq!(connector.closed.load(Ordering::SeqCst), 1);
    assert_eq!(pool.stats().closed_for(CloseReason::Shutdown), 1);
    assert!(matches!(
        pool.checkout(None).await.err().unwrap(),
        CheckoutError::Closed
    ));
}

#[tokio::test]
async fn close_idle_closes_idle_and_unwanted_connections_but_still_serves() {
    let connector = Arc::new(Counting::default());
    let pool = Pool::new(Arc::clone(&connector), limits(1));
    pool.checkout(None).await.unwrap().release();
    pool.close_idle();
    assert_eq!(connector.closed.load(Ordering::SeqCst), 1);
    assert!(
        pool.wants_connections_back(),
        "kept connections are asked back"
    );

    let held = pool.checkout(None).await.unwrap();
    assert_eq!(connector.opened.load(Ordering::SeqCst), 2);
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.checkout(None).await.map(|lease| lease.release()) }
    });
    wait_until(|| pool.shared.demand.anyone_waiting()).await;
    held.release();
    waiter.await.unwrap().unwrap();
    assert_eq!(
        connector.opened.load(Ordering::SeqCst),
        2,
        "a client waiting in line got the connection given back"
    );
    assert_eq!(connector.closed.load(Ordering::SeqCst), 2, "then it closed");
    assert_eq!(pool.idle_count(), 0);
    assert_eq!(pool.stats().closed_for(CloseReason::Shutdown), 2);
}

#[tokio::test]
async fn a_flapping_upstream_is_retried_within_the_wait() {
    let connector = Arc::new(Counting::default());
    let pool = Pool::new(Arc::clone(&connector), limits(1));
    connector.fail.store(true, Ordering::SeqCst);
    let recover = {
        let connector = Arc::clone(&connector);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            connector.fail.store(false, Ordering::SeqCst);
        })
    };
    let conn = pool.checkout(Some(Duration::from_secs(5))).await;
    assert!(
        conn.is_ok(),
        "the client waited for the upstream to come back"
    );
    recover.await.unwrap();
    assert!(pool.stats().connect_failures >= 2, "{:?}", pool.stats());
}

#[tokio::test]
async fn a_down_upstream_gives_waiters_a_clean_error_after_the_wait() {
    let connector = Arc::new(Counting::default());
    let pool = Pool::new(Arc::clone(&connector), limits(1));
    connector.fail.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let (first, second) = tokio::join!(
        pool.checkout(Some(Duration::from_millis(400))),
        pool.checkout(Some(Duration::from_millis(400)))
    );
    let waited = started.elapsed();
    assert!(matches!(first.err().unwrap(), CheckoutError::Connect(_)));
    // The second either timed out in line behind the first's retries or
    // tried once itself in the last moment: either way it names the cause.
    let second = second.err().unwrap();
    assert!(
        matches!(&second, CheckoutError::UpstreamDown { last_error, .. } if last_error == "refused")
            || matches!(&second, CheckoutError::Connect(_)),
        "{second}"
    );
    // It retried (the pool's back-off: 50 ms, then 100 ms, jittered) and
    // gave up once the next attempt could not come before its deadline.
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert!(pool.stats().connect_failures >= 2, "{:?}", pool.stats());
}

#[tokio::test]
async fn pause_holds_waiters_in_line_drains_and_resume_serves_them_in_order() {
    let connector = Arc::new(Counting::default());
    let pool = Pool::new(Arc::clone(&connector), limits(1));
    let busy = pool.checkout(None).await.unwrap();
    pool.pause();
    assert!(pool.is_paused());
    assert_eq!(connector.closed.load(Ordering::SeqCst), 0, "busy one kept");
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for index in 0..3 {
        let (pool2, order2) = (pool.clone(), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let conn = pool2.checkout(Some(Duration::from_secs(5))).await.unwrap();
            order2.lock().unwrap().push(index);
            tokio::task::yield_now().await;
            conn.release();
        }));
        wait_until(|| pool.stats().waiting == index + 1).await;
    }
    busy.release();
    assert_eq!(pool.stats().open, 0, "given back while paused: closed");
    assert!(pool.stats().longest_wait > Duration::ZERO);
    assert!(order.lock().unwrap().is_empty());
    pool.resume();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    let stats = pool.stats();
    assert_eq!((stats.waiting, stats.in_use, stats.opening), (0, 0, 0));
    assert!(stats.wait_time > Duration::ZERO);
}

#[tokio::test]
async fn a_paused_pool_closes_idle_times_waiters_out_and_opens_nothing() {
    let connector = Arc::new(Counting::default());
    let mut pool_limits = limits(2);
    pool_limits.min_size = 1;
    let pool = Pool::new(Arc::clone(&connector), pool_limits);
    wait_until(|| pool.idle_count() == 1).await;
    pool.pause();
    assert_eq!(
        connector.closed.load(Ordering::SeqCst),
        1,
        "idle one closed"
    );
    let error = pool.checkout(Some(Duration::from_millis(50))).await.err();
    assert!(matches!(error, Some(CheckoutError::WaitTimeout(_))));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        connector.opened.load(Ordering::SeqCst),
        1,
        "janitor waits too"
    );
    let stats = pool.stats();
    assert_eq!((stats.waiting, stats.wait_timeouts), (0, 1));
}

#[tokio::test]
async fn an_abandoned_checkout_stops_counting_as_waiting() {
    let pool = Pool::new(Arc::new(Counting::default()), limits(1));
    let held = pool.checkout(None).await.unwrap();
    assert_eq!(pool.stats().in_use, 1);
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.checkout(None).await.map(Lease::release) }
    });
    wait_until(|| pool.stats().waiting == 1).await;
    waiter.abort();
    wait_until(|| pool.stats().waiting == 0).await;
    held.release();
    assert_eq!(pool.stats().in_use, 0);
}

#[tokio::test]
async fn new_limits_grow_at_once_and_shrink_as_connections_come_back() {
    let connector = Arc::new(Counting::default());
    let pool = Pool::new(Arc::clone(&connector), limits(1));
    let first = pool.checkout(None).await.unwrap();
    pool.set_limits(limits(2));
    let second = pool
        .checkout(Some(Duration::from_millis(500)))
        .await
        .expect("grown at once");
    pool.set_limits(limits(1));
    assert_eq!(pool.limits().max_size, 1);
    // The shrink waits in line like a client; let it get in line first.
    tokio::task::yield_now().await;
    first.release();
    second.release();
    let held = pool.checkout(None).await.unwrap();
    let over = pool.checkout(Some(Duration::from_millis(100))).await;
    assert!(
        matches!(over, Err(CheckoutError::WaitTimeout(_))),
        "shrunk to 1"
    );
    held.release();
}

#[tokio::test]
async fn a_kept_connection_wanted_back_goes_to_the_longest_waiter_not_its_keeper() {
    let pool = Pool::new(Arc::new(Counting::default()), limits(1));
    let kept = pool.checkout(None).await.unwrap();
    assert!(!pool.wants_connections_back(), "nobody else needs it");
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let waiter = tokio::spawn({
        let (pool, order) = (pool.clone(), Arc::clone(&order));
        async move {
            let mut conn = pool.checkout(None).await.unwrap();
            order.lock().unwrap().push(("waiter", conn.conn().id));
            done_rx.await.unwrap();
            conn.release();
        }
    });
    tokio::time::timeout(Duration::from_secs(5), pool.connection_wanted_back())
        .await
        .expect("the waiter asks for the kept connection");
    kept.release();
    // The keeper asks again at once: it must queue behind the waiter.
    let keeper = tokio::spawn({
        let (pool, order) = (pool.clone(), Arc::clone(&order));
        async move {
            let mut conn = pool.checkout(None).await.unwrap();
            order.lock().unwrap().push(("keeper", conn.conn().id));
            conn.release();
        }
    });
    wait_until(|| order.lock().unwrap().len() == 1 && pool.stats().waiting == 1).await;
    assert_eq!(*order.lock().unwrap(), [("waiter", 0)]);
    done_tx.send(()).unwrap();
    waiter.await.unwrap();
    keeper.await.unwrap();
    assert_eq!(*order.lock().unwrap(), [("waiter", 0), ("keeper", 0)]);
    assert!(!pool.wants_connections_back(), "nobody waits any more");
}

#[tokio::test]
async fn one_waiter_wakes_one_keeper() {
    let pool = Pool::new(Arc::new(Counting::default()), limits(2));
    let woken = Arc::new(AtomicUsize::new(0));
    let keepers: Vec<_> = futures_checkouts(&pool, 2)
        .await
        .into_iter()
        .map(|conn| {
            let (pool, woken) = (pool.clone(), Arc::clone(&woken));
            tokio::spawn(async move {
                pool.connection_wanted_back().await;
                woken.fetch_add(1, Ordering::SeqCst);
                conn.release();
            })
        })
        .collect();
    tokio::task::yield_now().await;
    let waiter = pool.checkout(Some(Duration::from_secs(5))).await.unwrap();
    // The waiter is served; the other keeper, woken by nothing, keeps its own.
    assert_eq!(woken.load(Ordering::SeqCst), 1);
    assert!(!pool.wants_connections_back());
    assert_eq!(pool.stats().in_use, 2);
    pool.close();
    for keeper in keepers {
        keeper.await.unwrap();
    }
    assert_eq!(
        woken.load(Ordering::SeqCst),
        2,
        "closing wants every one back"
    );
    waiter.release();
    assert_eq!(pool.stats().open, 0);
}

#[tokio::test]
async fn pausing_and_shrinking_want_kept_connections_back() {
    let pool = Pool::new(Arc::new(Counting::default()), limits(2));
    let mut kept = futures_checkouts(&pool, 2).await;
    pool.pause();
    assert!(pool.wants_connections_back());
    pool.resume();
    assert!(!pool.wants_connections_back());
    pool.set_limits(limits(1));
    tokio::time::timeout(Duration::from_secs(5), pool.connection_wanted_back())
        .await
        .expect("the shrink asks for a connection");
    kept.pop().unwrap().release();
    wait_until(|| !pool.wants_connections_back()).await;
    assert_eq!(pool.stats().in_use, 1, "the other one is kept");
    kept.pop().unwrap().release();
}

#[tokio::test]
async fn a_kept_connection_is_due_back_at_its_idle_timeout_and_counts_as_idle_since_kept() {
    let connector = Arc::new(Counting::default());
    let mut pool_limits = limits(1);
    let idle_timeout = Duration::from_secs(60);
    pool_limits.idle_timeout = Some(idle_timeout);
    let pool = Pool::new(Arc::clone(&connector), pool_limits);
    let mut conn = pool.checkout(None).await.unwrap();
    let before = std::time::Instant::now();
    let due = conn.keep_idle();
    assert!(due >= before + idle_timeout && due <= std::time::Instant::now() + idle_timeout);
    assert!(!conn.is_expired());
    conn.release();
    assert_eq!(
        pool.reap(due, 0, Some(idle_timeout)),
        1,
        "idle since it was kept, not since it was given back"
    );
    assert_eq!(pool.stats().closed_for(CloseReason::Idle), 1);
}

#[tokio::test]
async fn a_kept_connection_is_due_back_when_its_lifetime_ends() {
    let mut pool_limits = limits(1);
    pool_limits.lifetime = Duration::ZERO;
    pool_limits.idle_timeout = Some(Duration::from_secs(60));
    let pool = Pool::new(Arc::new(Counting::default()), pool_limits);
    let mut conn = pool.checkout(None).await.unwrap();
    assert!(conn.is_expired());
    assert!(conn.keep_idle() <= std::time::Instant::now());
    conn.release();
    assert_eq!(pool.stats().closed_for(CloseReason::Lifetime), 1);
}

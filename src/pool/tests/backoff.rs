//! The pool's one reconnect back-off: waiting clients share it during an
//! outage, a healthy pool opens in parallel, and the waiters are served
//! once an attempt succeeds.

use super::*;

#[tokio::test]
async fn waiting_clients_share_one_reconnect_back_off_during_an_outage() {
    let connector = Arc::new(Counting::default());
    let pool = Pool::new(Arc::clone(&connector), limits(4));
    connector.fail.store(true, Ordering::SeqCst);
    // One failed attempt puts the pool in an outage.
    assert!(pool.checkout(None).await.is_err());
    assert_eq!(connector.attempts.load(Ordering::SeqCst), 1);
    let started = std::time::Instant::now();
    let wait = Some(Duration::from_secs(2));
    let (a, b, c, d) = tokio::join!(
        pool.checkout(wait),
        pool.checkout(wait),
        pool.checkout(wait),
        pool.checkout(wait)
    );
    let waited = started.elapsed();
    for result in [a, b, c, d] {
        let error = result.err().expect("the upstream is down");
        assert!(
            matches!(&error, CheckoutError::Connect(_))
                || matches!(&error, CheckoutError::UpstreamDown { last_error, .. } if last_error == "refused"),
            "{error}"
        );
    }
    // Pauses of 50, 100, 200, 400, 800 ms (±25%) fit 4 or 5 attempts into
    // the 2 s wait, one at a time; one back-off per client would be 4 × 5.
    let attempts = connector.attempts.load(Ordering::SeqCst) - 1;
    assert!(
        (4..=5).contains(&attempts),
        "{attempts} attempts in {waited:?}"
    );
    assert!(waited < Duration::from_millis(2100), "{waited:?}");
}

#[tokio::test]
async fn a_healthy_pool_opens_connections_in_parallel() {
    let connector = Arc::new(Counting::default());
    let pool = Pool::new(Arc::clone(&connector), limits(4));
    connector.hang.store(true, Ordering::SeqCst);
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.checkout(Some(Duration::from_secs(5))).await })
        })
        .collect();
    wait_until(|| connector.attempts.load(Ordering::SeqCst) == 4).await;
    assert_eq!(pool.stats().opening, 4, "{:?}", pool.stats());
    for task in opening {
        task.abort();
    }
}

#[tokio::test]
async fn after_an_outage_the_waiters_get_connections_once_one_attempt_succeeds() {
    let connector = Arc::new(Counting::default());
    let pool = Pool::new(Arc::clone(&connector), limits(4));
    connector.fail.store(true, Ordering::SeqCst);
    assert!(pool.checkout(None).await.is_err());
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.checkout(Some(Duration::from_secs(5))).await })
        })
        .collect();
    wait_until(|| connector.attempts.load(Ordering::SeqCst) >= 3).await;
    connector.fail.store(false, Ordering::SeqCst);
    for waiter in waiters {
        assert!(waiter.await.unwrap().is_ok());
    }
    assert_eq!(connector.opened.load(Ordering::SeqCst), 4);
}

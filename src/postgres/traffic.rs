//! What one client's session does, counted in plain integers as its bytes
//! and messages pass (the session already sees every read chunk and the
//! relay every message type), then added to its pool's counters in one go
//! when a transaction ends and when the session ends. Transaction times go
//! to the pool's histogram through a handle the session looked up once.

use std::time::Instant;

use metrics::Histogram;

use crate::pool::Traffic;

/// A session's traffic not yet added to its pool's counters.
pub(super) struct SessionTraffic {
    pending: Traffic,
    /// When the transaction now running on the server began.
    transaction_started: Option<Instant>,
    transaction_seconds: Histogram,
}

impl SessionTraffic {
    pub(super) fn new(transaction_seconds: Histogram) -> Self {
        SessionTraffic {
            pending: Traffic::default(),
            transaction_started: None,
            transaction_seconds,
        }
    }

    /// `bytes` were read from the client.
    pub(super) fn received(&mut self, bytes: usize) {
        self.pending.bytes_received += bytes as u64;
    }

    /// `bytes` were written to the client.
    pub(super) fn sent(&mut self, bytes: usize) {
        self.pending.bytes_sent += bytes as u64;
    }

    /// The client sent a message of type `tag` on to the server.
    pub(super) fn client_sent(&mut self, tag: u8) {
        match tag {
            // Simple query, Execute, function call: a transaction starts
            // with its first query (a Parse and Describe alone start none).
            b'Q' | b'E' | b'F' => {
                self.pending.queries += 1;
                if self.transaction_started.is_none() {
                    self.transaction_started = Some(Instant::now());
                }
            }
            _ => {}
        }
    }

    /// The server sent ReadyForQuery with transaction `status`; `more_owed`
    /// when it owes more for messages already sent (a pipeline), whose
    /// transaction starts now.
    pub(super) fn ready_for_query(&mut self, status: u8, more_owed: bool) {
        if status != b'I' {
            return;
        }
        // A lone Sync ends no transaction.
        let Some(started) = self.transaction_started.take() else {
            return;
        };
        let now = Instant::now();
        let took = now.saturating_duration_since(started);
        self.pending.transactions += 1;
        self.pending.transaction_time += took;
        self.transaction_seconds.record(took.as_secs_f64());
        if more_owed {
            self.transaction_started = Some(now);
        }
    }

    /// A transaction ended since the traffic was last taken.
    pub(super) fn transaction_ended(&self) -> bool {
        self.pending.transactions > 0
    }

    /// The traffic counted so far; counting starts again from zero.
    pub(super) fn take(&mut self) -> Traffic {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic() -> SessionTraffic {
        SessionTraffic::new(Histogram::noop())
    }

    #[test]
    fn simple_queries_and_transactions_are_counted() {
        let mut session = traffic();
        session.client_sent(b'Q');
        session.ready_for_query(b'T', false);
        session.client_sent(b'Q');
        session.ready_for_query(b'T', false);
        session.client_sent(b'Q');
        assert!(!session.transaction_ended(), "COMMIT not answered yet");
        session.ready_for_query(b'I', false);
        session.client_sent(b'Q');
        session.ready_for_query(b'I', false);
        session.received(30);
        session.sent(70);
        let counted = session.take();
        assert_eq!(counted.queries, 4);
        assert_eq!(counted.transactions, 2);
        assert_eq!((counted.bytes_received, counted.bytes_sent), (30, 70));
        assert!(session.take().is_empty(), "taken once");
    }

    #[test]
    fn extended_protocol_and_pipelines() {
        let mut session = traffic();
        for tag in *b"PBDES" {
            session.client_sent(tag);
        }
        for tag in *b"BES" {
            session.client_sent(tag);
        }
        session.ready_for_query(b'I', true);
        session.ready_for_query(b'I', false);
        // A lone Sync, or a statement only prepared: no transaction.
        session.client_sent(b'S');
        session.ready_for_query(b'I', false);
        for tag in *b"PDS" {
            session.client_sent(tag);
        }
        session.ready_for_query(b'I', false);
        let counted = session.take();
        assert_eq!(counted.queries, 2);
        assert_eq!(counted.transactions, 2);
    }

    #[test]
    fn a_failed_transaction_ends_at_its_rollback() {
        let mut session = traffic();
        session.client_sent(b'Q');
        session.ready_for_query(b'E', false);
        session.client_sent(b'Q');
        session.ready_for_query(b'I', false);
        assert_eq!(session.take().transactions, 1);
    }
}

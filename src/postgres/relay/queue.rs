//! The responses a server connection owes, in order, for the messages
//! churnstile sent it. Under transaction pooling churnstile rewrites the
//! extended protocol (prepared statements are renamed, prepared lazily,
//! closed on eviction), so some responses must be swallowed (they answer
//! messages the client never sent) and some synthesised (they answer
//! messages churnstile answered itself). This queue keeps the client's view
//! exactly what a direct connection would show, errors included. It also
//! knows which of the client's named Parses are still unanswered, so that a
//! statement name whose Parse failed or was skipped is freed, as PostgreSQL
//! frees it.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// ParseComplete.
pub(super) const PARSE_COMPLETE: &[u8] = &[b'1', 0, 0, 0, 4];

/// A response (or run of responses) the server owes for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expect {
    /// ParseComplete for a Parse; `prepares` is the server-side statement
    /// name it creates, `swallow` when churnstile injected the Parse.
    Parse {
        prepares: Option<String>,
        swallow: bool,
    },
    /// BindComplete; `swallow` when churnstile injected the Bind.
    Bind {
        swallow: bool,
    },
    /// ParseComplete for a client's Parse of a named statement, whose names
    /// are the oldest of [`ResponseQueue`]'s unanswered client Parses.
    /// `answered` when the server already holds the statement, so churnstile
    /// answers it itself when its turn comes.
    ClientParse {
        answered: bool,
    },
    /// CloseComplete; `evicts` names a statement churnstile closed itself.
    Close {
        evicts: Option<String>,
        swallow: bool,
    },
    DescribeStatement,
    DescribePortal,
    /// Rows, then CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute,
    /// ReadyForQuery.
    Sync,
    /// A simple query or function call: everything up to ReadyForQuery.
    Query,
    /// Bytes churnstile answers with itself, sent when their turn comes.
    Synthetic(Bytes),
}

/// Bookkeeping a server's responses imply for its prepared statements.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct StatementChanges {
    /// Parses that failed or were skipped: not prepared after all.
    pub(super) not_prepared: Vec<String>,
    /// Evicting Closes that were skipped: still prepared.
    pub(super) still_prepared: Vec<String>,
    /// Client Parses of named statements that failed or were skipped: the
    /// client's name is free again if it still stands for that statement.
    pub(super) unbound: Vec<ClientParse>,
}

/// A client's Parse of a named statement, not yet answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClientParse {
    /// The client's statement name.
    pub(super) name: String,
    /// The server-side statement the name stands for.
    pub(super) server_name: String,
    /// Syncs queued before it: which Sync group it belongs to.
    group: u64,
}

/// What to do with one server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Routing {
    Forward,
    Swallow,
}

/// Responses owed by one server connection, oldest first.
#[derive(Debug, Default)]
pub(in crate::postgres) struct ResponseQueue {
    entries: VecDeque<Expect>,
    /// One per [`Expect::ClientParse`] entry, in the same order.
    client_parses: VecDeque<ClientParse>,
    /// Syncs queued so far.
    syncs: u64,
}

impl ResponseQueue {
    pub(super) fn push(&mut self, expect: Expect) {
        if matches!(expect, Expect::Sync) {
            self.syncs += 1;
        }
        self.entries.push_back(expect);
    }

    /// Queues the answer to a client's Parse of statement `name`, which
    /// stands for `server_name`; `answered` when the server already holds
    /// it and churnstile answers ParseComplete itself.
    pub(super) fn push_client_parse(&mut self, name: String, server_name: String, answered: bool) {
        self.client_parses.push_back(ClientParse {
            name,
            server_name,
            group: self.syncs,
        });
        self.entries.push_back(Expect::ClientParse { answered });
    }

    /// A Parse of the client's statement `name` in an earlier Sync group is
    /// unanswered: whether the name exists depends on how it ends. (In the
    /// same group it does not matter: after a failure the server skips to
    /// the Sync.)
    pub(super) fn awaits_earlier_parse(&self, name: &str) -> bool {
        self.client_parses
            .iter()
            .any(|parse| parse.group < self.syncs && parse.name == name)
    }

    /// Takes back the entry pushed last (to put entries before it).
    pub(super) fn pop_last(&mut self) -> Option<Expect> {
        self.entries.pop_back()
    }

    /// Forgets the first `count` Syncs owed: the server ignores Syncs sent
    /// after a COPY FROM STDIN started, until the copy ends.
    pub(super) fn forget_syncs(&mut self, mut count: usize) {
        // Called for every server message; almost always with nothing to do.
        if count == 0 {
            return;
        }
        self.entries.retain(|entry| {
            let ignored = count > 0 && matches!(entry, Expect::Sync);
            count -= usize::from(ignored);
            !ignored
        });
    }

    /// Nothing is owed.
    pub(in crate::postgres) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends synthesised responses whose turn has come.
    pub(super) fn emit_ready(&mut self, out: &mut BytesMut) {
        loop {
            match self.entries.front() {
                Some(Expect::Synthetic(bytes)) => out.extend_from_slice(bytes),
                Some(Expect::ClientParse { answered: true }) => {
                    self.client_parses.pop_front();
                    out.extend_from_slice(PARSE_COMPLETE);
                }
                _ => return,
            }
            self.entries.pop_front();
        }
    }

    /// Routes one server message by its type, updating what is owed.
    /// Synthesised responses due before it are appended to `out` first;
    /// those due after it go out with the next message or [`Self::emit_ready`].
    pub(super) fn route(
        &mut self,
        tag: u8,
        out: &mut BytesMut,
        changes: &mut StatementChanges,
    ) -> Routing {
        self.emit_ready(out);
        match tag {
            b'1' => match self.entries.pop_front() {
                Some(Expect::Parse { swallow: true, .. }) => Routing::Swallow,
                Some(Expect::ClientParse { .. }) => {
                    self.client_parses.pop_front();
                    Routing::Forward
                }
                _ => Routing::Forward,
            },
            b'3' => match self.entries.pop_front() {
                Some(Expect::Close { swallow: true, .. }) => Routing::Swallow,
                _ => Routing::Forward,
            },
            b'2' => match self.entries.front() {
                Some(Expect::Bind { swallow }) => {
                    let swallow = *swallow;
                    self.entries.pop_front();
                    if swallow {
                        Routing::Swallow
                    } else {
                        Routing::Forward
                    }
                }
                _ => Routing::Forward,
            },
            b'T' | b'n' => {
                self.pop_if(|e| matches!(e, Expect::DescribeStatement | Expect::DescribePortal))
            }
            b'C' | b'I' | b's' => self.pop_if(|e| matches!(e, Expect::Execute)),
            b'Z' => self.pop_if(|e| matches!(e, Expect::Sync | Expect::Query)),
            b'E' => {
                self.fail(changes);
                Routing::Forward
            }
            _ => Routing::Forward,
        }
    }

    fn pop_if(&mut self, expected: impl Fn(&Expect) -> bool) -> Routing {
        if self.entries.front().is_some_and(expected) {
            self.entries.pop_front();
        }
        Routing::Forward
    }

    /// An ErrorResponse: inside a simple query the query goes on to its
    /// ReadyForQuery; in the extended protocol the server skips every
    /// message up to the next Sync, so nothing is owed for them.
    fn fail(&mut self, changes: &mut StatementChanges) {
        if matches!(self.entries.front(), Some(Expect::Query)) {
            return;
        }
        while let Some(entry) = self.entries.front() {
            if matches!(entry, Expect::Sync | Expect::Query) {
                break;
            }
            match self.entries.pop_front() {
                Some(Expect::Parse {
                    prepares: Some(name),
                    ..
                }) => changes.not_prepared.push(name),
                Some(Expect::ClientParse { answered }) => {
                    if let Some(parse) = self.client_parses.pop_front() {
                        if !answered {
                            changes.not_prepared.push(parse.server_name.clone());
                        }
                        changes.unbound.push(parse);
                    }
                }
                Some(Expect::Close {
                    evicts: Some(name), ..
                }) => changes.still_prepared.push(name),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(queue: &mut ResponseQueue, tags: &[u8]) -> (Vec<u8>, StatementChanges) {
        let mut out = BytesMut::new();
        let mut changes = StatementChanges::default();
        for &tag in tags {
            if queue.route(tag, &mut out, &mut changes) == Routing::Forward {
                out.extend_from_slice(&[tag]);
            }
        }
        queue.emit_ready(&mut out);
        (out.to_vec(), changes)
    }

    fn synthetic(tag: u8) -> Expect {
        Expect::Synthetic(Bytes::copy_from_slice(&[tag]))
    }

    #[test]
    fn injected_parse_is_swallowed_and_skipped_parse_synthesised() {
        let mut queue = ResponseQueue::default();
        queue.push(Expect::Parse {
            prepares: Some("ps1".into()),
            swallow: true,
        });
        queue.push(Expect::Bind { swallow: false });
        queue.push(Expect::Execute);
        queue.push(synthetic(b'1'));
        queue.push(Expect::Bind { swallow: false });
        queue.push(Expect::Execute);
        queue.push(Expect::Sync);
        let (out, changes) = run(&mut queue, b"12DC2DCZ");
        assert_eq!(out, b"2DC12DCZ".to_vec());
        assert_eq!(changes, StatementChanges::default());
        assert!(queue.is_empty());
    }

    #[test]
    fn synthesised_response_at_the_head_goes_out_at_once() {
        let mut queue = ResponseQueue::default();
        queue.push(synthetic(b'1'));
        let mut out = BytesMut::new();
        queue.emit_ready(&mut out);
        assert_eq!(&out[..], b"1");
    }

    #[test]
    fn error_skips_to_sync_and_unrecords_statements() {
        let mut queue = ResponseQueue::default();
        queue.push(Expect::Parse {
            prepares: Some("ps1".into()),
            swallow: true,
        });
        queue.push(Expect::Bind { swallow: false });
        queue.push(synthetic(b'1'));
        queue.push(Expect::Close {
            evicts: Some("ps0".into()),
            swallow: true,
        });
        queue.push(Expect::Parse {
            prepares: Some("ps2".into()),
            swallow: false,
        });
        queue.push(Expect::Sync);
        let (out, changes) = run(&mut queue, b"EZ");
        assert_eq!(
            out,
            b"EZ".to_vec(),
            "the injected Parse's error reaches the client"
        );
        assert_eq!(
            changes.not_prepared,
            vec!["ps1".to_owned(), "ps2".to_owned()]
        );
        assert_eq!(changes.still_prepared, vec!["ps0".to_owned()]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_client_parse_the_server_holds_is_answered_in_its_turn() {
        let mut queue = ResponseQueue::default();
        queue.push(Expect::Bind { swallow: false });
        queue.push_client_parse("s".into(), "ps1".into(), true);
        queue.push(Expect::Sync);
        assert!(queue.awaits_earlier_parse("s"));
        let (out, changes) = run(&mut queue, b"2Z");
        assert_eq!(out, [b"2", PARSE_COMPLETE, b"Z"].concat());
        assert_eq!(changes, StatementChanges::default());
        assert!(!queue.awaits_earlier_parse("s"));
        assert!(queue.is_empty());
    }

    #[test]
    fn only_a_parse_in_an_earlier_sync_group_is_awaited() {
        let mut queue = ResponseQueue::default();
        queue.push_client_parse("s".into(), "ps1".into(), false);
        assert!(
            !queue.awaits_earlier_parse("s"),
            "a failure skips the rest of its own Sync group"
        );
        queue.push(Expect::Sync);
        assert!(queue.awaits_earlier_parse("s"));
        assert!(!queue.awaits_earlier_parse("t"));
        let (out, changes) = run(&mut queue, b"1Z");
        assert_eq!(out, b"1Z".to_vec());
        assert!(changes.unbound.is_empty());
        assert!(!queue.awaits_earlier_parse("s"));
    }

    #[test]
    fn client_parses_that_fail_or_are_skipped_unbind_their_names() {
        let mut queue = ResponseQueue::default();
        queue.push_client_parse("bad".into(), "ps1".into(), false);
        queue.push_client_parse("held".into(), "ps2".into(), true);
        queue.push(Expect::Sync);
        queue.push_client_parse("next".into(), "ps3".into(), false);
        queue.push(Expect::Sync);
        let (out, changes) = run(&mut queue, b"EZ");
        assert_eq!(out, b"EZ".to_vec(), "the skipped Parse is not answered");
        assert_eq!(
            changes.not_prepared,
            vec!["ps1".to_owned()],
            "the server still holds the statement it already had"
        );
        let unbound: Vec<_> = changes
            .unbound
            .iter()
            .map(|parse| (parse.name.as_str(), parse.server_name.as_str()))
            .collect();
        assert_eq!(unbound, [("bad", "ps1"), ("held", "ps2")]);
        assert!(queue.awaits_earlier_parse("next"));
        let (out, changes) = run(&mut queue, b"1Z");
        assert_eq!(out, b"1Z".to_vec());
        assert!(changes.unbound.is_empty());
        assert!(queue.is_empty());
    }

    #[test]
    fn syncs_ignored_during_copy_are_forgotten() {
        let mut queue = ResponseQueue::default();
        queue.push(Expect::Execute);
        queue.push(Expect::Sync);
        queue.push(Expect::Sync);
        queue.forget_syncs(1);
        let (out, _) = run(&mut queue, b"GCZ");
        assert_eq!(out, b"GCZ".to_vec());
        assert!(queue.is_empty());
    }

    #[test]
    fn an_injected_bind_is_swallowed() {
        let mut queue = ResponseQueue::default();
        queue.push(Expect::Parse {
            prepares: None,
            swallow: true,
        });
        queue.push(Expect::Bind { swallow: true });
        queue.push(Expect::Execute);
        queue.push(Expect::Bind { swallow: false });
        queue.push(Expect::Execute);
        queue.push(Expect::Sync);
        let (out, _) = run(&mut queue, b"12EZ");
        assert_eq!(out, b"EZ".to_vec());
        assert!(queue.is_empty());
    }

    #[test]
    fn simple_query_errors_wait_for_ready_for_query() {
        let mut queue = ResponseQueue::default();
        queue.push(Expect::Query);
        queue.push(synthetic(b'x'));
        let (out, _) = run(&mut queue, b"TDCEZ");
        assert_eq!(out, b"TDCEZx".to_vec());
    }

    #[test]
    fn describe_statement_spans_two_messages() {
        let mut queue = ResponseQueue::default();
        queue.push(Expect::DescribeStatement);
        queue.push(synthetic(b'3'));
        queue.push(Expect::Sync);
        let (out, _) = run(&mut queue, b"tTZ");
        assert_eq!(out, b"tT3Z".to_vec());
    }

    #[test]
    fn async_messages_do_not_release_synthesised_responses_early() {
        let mut queue = ResponseQueue::default();
        queue.push(Expect::Bind { swallow: false });
        queue.push(synthetic(b'3'));
        queue.push(Expect::Sync);
        let (out, _) = run(&mut queue, b"N2Z");
        assert_eq!(out, b"N23Z".to_vec());
    }
}

//! The rewriting of the extended protocol under transaction and statement
//! pooling, one client message at a time: client statement names become
//! churnstile's server-side names, statements are prepared lazily where the
//! client landed, closes are answered by churnstile, and statements the pool
//! mode or pin policy forbids are refused by the server itself, so the
//! client sees exactly what a direct connection would show.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::queue::{Expect, ResponseQueue};
use crate::config::{PinPolicy, PoolMode, PoolSettings};
use crate::postgres::prepared::{
    ServerStatements, StatementDef, StatementRegistry, bind_message, split_bind, split_parse,
    split_target, target_message,
};
use crate::postgres::sql::{self, Analysis, Deallocate, PinReason};
use crate::postgres::state::literal;
use crate::postgres::wire::codec::{self, Verdict};

const CLOSE_COMPLETE: &[u8] = &[b'3', 0, 0, 0, 4];

/// Rewrites one client's messages for the server connection it is on.
pub(super) struct Rewriter<'a> {
    pub(super) client_statements: &'a mut HashMap<String, Arc<StatementDef>>,
    pub(super) server_statements: &'a mut ServerStatements,
    pub(super) queue: &'a mut ResponseQueue,
    pub(super) registry: &'a StatementRegistry,
    pub(super) settings: &'a PoolSettings,
    pub(super) needs_probe: &'a mut bool,
    pub(super) pins: &'a mut BTreeMap<PinReason, String>,
    /// Custom settings the client's statements touch.
    pub(super) custom_settings: &'a mut Vec<String>,
    pub(super) unnamed_statement: &'a mut Option<Bytes>,
    pub(super) unnamed_is_clients: &'a mut bool,
}

impl Rewriter<'_> {
    /// Rewrites one message, or returns [`Verdict::StopBefore`] to hold it
    /// (untouched, with everything after it) until the server has answered
    /// the Parse that decides whether the statement it names exists.
    pub(super) fn handle(&mut self, tag: u8, body: Option<&[u8]>, out: &mut BytesMut) -> Verdict {
        match (tag, body) {
            (b'Q', Some(body)) => self.query(body, out),
            (b'P', Some(body)) => self.parse(body, out),
            (b'B', Some(body)) => self.bind(body, out),
            (b'D', Some(body)) => self.describe(body, out),
            (b'C', Some(body)) => self.close(body, out),
            (b'E', _) => self.expect(Expect::Execute),
            (b'S', _) => self.expect(Expect::Sync),
            (b'F', _) => self.expect(Expect::Query),
            _ => Verdict::Forward,
        }
    }

    fn expect(&mut self, expect: Expect) -> Verdict {
        self.queue.push(expect);
        Verdict::Forward
    }

    /// A simple query: noted for state tracking, refused when the pool mode
    /// or pin policy forbids it, DEALLOCATE of a client statement mapped.
    fn query(&mut self, body: &[u8], out: &mut BytesMut) -> Verdict {
        let mut rest = body;
        let text = codec::take_cstr(&mut rest).unwrap_or_default();
        let deallocate = sql::deallocate_target(text);
        if let Some(Deallocate::Name(name)) = &deallocate
            && self.queue.awaits_earlier_parse(name)
        {
            return Verdict::StopBefore;
        }
        let analysis = sql::analyze(text);
        // A simple query drops the unnamed statement, the client's or not.
        *self.unnamed_statement = None;
        *self.unnamed_is_clients = true;
        if let Some(refusal) = self.refusal(&analysis) {
            write_query(out, &refusal);
            self.queue.push(Expect::Query);
            return Verdict::Drop;
        }
        self.note(&analysis);
        self.queue.push(Expect::Query);
        match deallocate {
            Some(Deallocate::All) => {
                self.client_statements.clear();
                self.server_statements.clear();
                Verdict::Forward
            }
            Some(Deallocate::Name(name)) => match self.client_statements.remove(&name) {
                Some(def) => {
                    // The queue entry for the query must follow the prepare.
                    self.queue.pop_last();
                    self.ensure_prepared(&def, out);
                    self.server_statements.forget(&def.server_name);
                    write_query(out, &format!("DEALLOCATE \"{}\"", def.server_name));
                    self.queue.push(Expect::Query);
                    Verdict::Drop
                }
                None => Verdict::Forward,
            },
            None => Verdict::Forward,
        }
    }

    fn note(&mut self, analysis: &Analysis) {
        if analysis.touches_session {
            *self.needs_probe = true;
        }
        // LOAD leaves no trace the server can be asked about: pin for good.
        if let Some((_, statement)) = analysis
            .pins
            .iter()
            .find(|(reason, _)| *reason == PinReason::Load)
        {
            self.pins.insert(PinReason::Load, statement.clone());
        }
        self.custom_settings
            .extend(analysis.custom_settings.iter().cloned());
        if analysis.drops_prepared_statements {
            // Every statement on the server goes, other clients' included.
            self.client_statements.clear();
            self.server_statements.clear();
        }
    }

    /// A query that raises the refusal on the server, so the transaction
    /// state the client sees is exactly the server's.
    fn refusal(&self, analysis: &Analysis) -> Option<String> {
        let message = if self.settings.pool_mode == PoolMode::Statement
            && analysis.begins_transaction
        {
            "transaction blocks are not allowed with pool_mode = statement; each statement runs on its own".to_owned()
        } else if self.settings.pin_policy == PinPolicy::Reject
            && let Some((reason, statement)) = analysis.pins.first()
        {
            format!(
                "statement refused by churnstile (pin_policy = reject): \"{statement}\": {}",
                reason.explanation()
            )
        } else {
            return None;
        };
        Some(raise_query("0A000", &message))
    }

    fn parse(&mut self, body: &[u8], out: &mut BytesMut) -> Verdict {
        let Some((name, tail)) = split_parse(body) else {
            return self.expect(Expect::Parse {
                prepares: None,
                swallow: false,
            });
        };
        if !name.is_empty() {
            if self.queue.awaits_earlier_parse(&name) {
                return Verdict::StopBefore;
            }
            if self.client_statements.contains_key(&name) {
                self.refuse_duplicate(&name, Bytes::copy_from_slice(tail), out);
                return Verdict::Drop;
            }
        }
        let mut query = tail;
        let analysis = sql::analyze(codec::take_cstr(&mut query).unwrap_or_default());
        self.note(&analysis);
        if let Some(refusal) = self.refusal(&analysis) {
            if name.is_empty() {
                *self.unnamed_statement = None;
            }
            self.refuse_in_place_of_parse(&refusal, out);
            return Verdict::Drop;
        }
        if name.is_empty() {
            // Clients mostly parse the same query again: keep the copy.
            if self.unnamed_statement.as_deref() != Some(tail) {
                *self.unnamed_statement = Some(Bytes::copy_from_slice(tail));
            }
            *self.unnamed_is_clients = true;
            return self.expect(Expect::Parse {
                prepares: None,
                swallow: false,
            });
        }
        let def = self.registry.intern(tail);
        self.client_statements
            .insert(name.clone(), Arc::clone(&def));
        if self.server_statements.contains(&def.server_name) {
            self.server_statements.touch(&def.server_name);
            self.queue
                .push_client_parse(name, def.server_name.clone(), true);
        } else {
            self.prepare(&def, out, Some(name));
        }
        Verdict::Drop
    }

    /// A Parse of a name the client has open. PostgreSQL checks the
    /// statement, then refuses the name with 42P05 and keeps the first
    /// statement. The error must come from the server, so that it skips to
    /// the Sync as after any failed Parse: the statement is parsed unnamed
    /// (its own error comes first, as directly), then the refusal runs.
    fn refuse_duplicate(&mut self, name: &str, parse_tail: Bytes, out: &mut BytesMut) {
        let check = StatementDef {
            server_name: String::new(),
            parse_tail,
        };
        check.parse_message(out);
        self.queue.push(Expect::Parse {
            prepares: None,
            swallow: true,
        });
        let message = format!("prepared statement \"{name}\" already exists");
        self.refuse_in_place_of_parse(&raise_query("42P05", &message), out);
    }

    /// Runs `refusal` (a statement that fails) instead of the client's
    /// Parse: its error reaches the client, a transaction fails as on any
    /// error, and the server skips the client's messages up to its Sync, as
    /// after a failed Parse. Only the error is forwarded.
    fn refuse_in_place_of_parse(&mut self, refusal: &str, out: &mut BytesMut) {
        let parse = StatementDef {
            server_name: String::new(),
            parse_tail: Bytes::from([refusal.as_bytes(), b"\0\0\0"].concat()),
        };
        parse.parse_message(out);
        self.queue.push(Expect::Parse {
            prepares: None,
            swallow: true,
        });
        bind_message(out, "", "", &[0, 0, 0, 0, 0, 0]);
        self.queue.push(Expect::Bind { swallow: true });
        out.extend_from_slice(&[b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0]);
        self.queue.push(Expect::Execute);
        *self.unnamed_is_clients = false;
    }

    /// Before the client uses the unnamed statement: the server's may be
    /// another client's, or gone. The client's own is prepared again; a
    /// client that has none gets PostgreSQL's error for that.
    fn ensure_unnamed(&mut self, out: &mut BytesMut) {
        if *self.unnamed_is_clients {
            return;
        }
        match self.unnamed_statement.clone() {
            Some(parse_tail) => {
                let def = StatementDef {
                    server_name: String::new(),
                    parse_tail,
                };
                def.parse_message(out);
                self.queue.push(Expect::Parse {
                    prepares: None,
                    swallow: true,
                });
                *self.unnamed_is_clients = true;
            }
            None => self.refuse_in_place_of_parse(
                &raise_query("26000", "unnamed prepared statement does not exist"),
                out,
            ),
        }
    }

    fn bind(&mut self, body: &[u8], out: &mut BytesMut) -> Verdict {
        let Some((portal, statement, tail)) = split_bind(body) else {
            return self.expect(Expect::Bind { swallow: false });
        };
        if self.queue.awaits_earlier_parse(&statement) {
            return Verdict::StopBefore;
        }
        let Some(def) = self.client_statements.get(&statement).cloned() else {
            if statement.is_empty() {
                self.ensure_unnamed(out);
            }
            return self.expect(Expect::Bind { swallow: false });
        };
        self.ensure_prepared(&def, out);
        bind_message(out, &portal, &def.server_name, tail);
        self.queue.push(Expect::Bind { swallow: false });
        Verdict::Drop
    }

    fn describe(&mut self, body: &[u8], out: &mut BytesMut) -> Verdict {
        match split_target(body) {
            Some((b'S', name)) if self.queue.awaits_earlier_parse(&name) => Verdict::StopBefore,
            Some((b'S', name)) => match self.client_statements.get(&name).cloned() {
                Some(def) => {
                    self.ensure_prepared(&def, out);
                    target_message(out, b'D', b'S', &def.server_name);
                    self.queue.push(Expect::DescribeStatement);
                    Verdict::Drop
                }
                None => {
                    if name.is_empty() {
                        self.ensure_unnamed(out);
                    }
                    self.expect(Expect::DescribeStatement)
                }
            },
            _ => self.expect(Expect::DescribePortal),
        }
    }

    /// Closing a named statement only forgets the client's name: the server
    /// statement may serve other clients and is evicted by the LRU.
    fn close(&mut self, body: &[u8], _out: &mut BytesMut) -> Verdict {
        match split_target(body) {
            Some((b'S', name)) if !name.is_empty() => {
                self.client_statements.remove(&name);
                self.queue
                    .push(Expect::Synthetic(Bytes::from_static(CLOSE_COMPLETE)));
                Verdict::Drop
            }
            _ => self.expect(Expect::Close {
                evicts: None,
                swallow: false,
            }),
        }
    }

    fn ensure_prepared(&mut self, def: &StatementDef, out: &mut BytesMut) {
        if self.server_statements.contains(&def.server_name) {
            self.server_statements.touch(&def.server_name);
        } else {
            self.prepare(def, out, None);
        }
    }

    /// Prepares `def` on the server, closing least recently used statements
    /// first to stay within `max_prepared_statements`. `client_name` is the
    /// client's statement name when the client sent this Parse; otherwise
    /// churnstile did and its ParseComplete is swallowed.
    fn prepare(&mut self, def: &StatementDef, out: &mut BytesMut, client_name: Option<String>) {
        let evicted = self
            .server_statements
            .insert(&def.server_name, self.settings.max_prepared_statements);
        for victim in evicted {
            target_message(out, b'C', b'S', &victim);
            self.queue.push(Expect::Close {
                evicts: Some(victim),
                swallow: true,
            });
        }
        def.parse_message(out);
        match client_name {
            Some(name) => self
                .queue
                .push_client_parse(name, def.server_name.clone(), false),
            None => self.queue.push(Expect::Parse {
                prepares: Some(def.server_name.clone()),
                swallow: true,
            }),
        }
    }
}

fn write_query(out: &mut BytesMut, sql: &str) {
    let start = out.len();
    out.extend_from_slice(&[b'Q', 0, 0, 0, 0]);
    out.extend_from_slice(sql.as_bytes());
    out.extend_from_slice(&[0]);
    let len = (out.len() - start - 1) as u32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

/// A statement that fails on the server with `code` and `message`.
fn raise_query(code: &str, message: &str) -> String {
    format!(
        "DO $churnstile$ BEGIN RAISE EXCEPTION USING ERRCODE = {}, MESSAGE = {}; END $churnstile$",
        literal(code),
        literal(&message.replace("$churnstile$", "$ churnstile$"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's statements and a server connection's, for one Rewriter.
    #[derive(Default)]
    struct Fixture {
        client_statements: HashMap<String, Arc<StatementDef>>,
        server_statements: ServerStatements,
        queue: ResponseQueue,
        registry: StatementRegistry,
        settings: PoolSettings,
        unnamed_statement: Option<Bytes>,
        unnamed_is_clients: bool,
    }

    impl Fixture {
        /// Rewrites one client message; returns the verdict and the tags
        /// of the messages written to the server instead.
        fn send(&mut self, tag: u8, body: &[u8]) -> (Verdict, Vec<u8>) {
            let mut rewriter = Rewriter {
                client_statements: &mut self.client_statements,
                server_statements: &mut self.server_statements,
                queue: &mut self.queue,
                registry: &self.registry,
                settings: &self.settings,
                needs_probe: &mut false,
                pins: &mut BTreeMap::new(),
                custom_settings: &mut Vec::new(),
                unnamed_statement: &mut self.unnamed_statement,
                unnamed_is_clients: &mut self.unnamed_is_clients,
            };
            let mut out = BytesMut::new();
            let verdict = rewriter.handle(tag, Some(body), &mut out);
            let mut tags = Vec::new();
            while let Ok(Some(message)) = codec::decode_message(&mut out, 1 << 20) {
                tags.push(message.tag);
            }
            (verdict, tags)
        }

        fn server_name(&self, client_name: &str) -> Option<String> {
            let def = self.client_statements.get(client_name)?;
            Some(def.server_name.clone())
        }
    }

    const PARSE_S_SELECT_1: &[u8] = b"s\0SELECT 1\0\0\0";
    const BIND_S: &[u8] = b"\0s\0\0\0\0\0\0\0";

    #[test]
    fn a_second_parse_of_an_open_name_fails_on_the_server_and_keeps_the_first() {
        let mut fixture = Fixture::default();
        assert_eq!(
            fixture.send(b'P', PARSE_S_SELECT_1),
            (Verdict::Drop, vec![b'P'])
        );
        let first = fixture.server_name("s");
        let (verdict, tags) = fixture.send(b'P', b"s\0SELECT 2\0\0\0");
        assert_eq!(verdict, Verdict::Drop);
        assert_eq!(
            tags,
            b"PPBE".to_vec(),
            "the statement is checked, then a refusal runs in its place"
        );
        assert_eq!(fixture.server_name("s"), first);
        assert!(
            !fixture.unnamed_is_clients,
            "the refusal took the server's unnamed statement"
        );
    }

    #[test]
    fn a_message_naming_a_statement_parsed_in_an_earlier_sync_group_waits_for_its_answer() {
        let mut fixture = Fixture::default();
        fixture.send(b'P', PARSE_S_SELECT_1);
        assert_eq!(
            fixture.send(b'B', BIND_S),
            (Verdict::Drop, vec![b'B']),
            "in the Parse's own Sync group a failure skips the Bind anyway"
        );
        fixture.send(b'S', b"");
        for (tag, body) in [
            (b'B', BIND_S),
            (b'D', b"Ss\0".as_slice()),
            (b'P', PARSE_S_SELECT_1),
            (b'Q', b"DEALLOCATE s\0".as_slice()),
        ] {
            assert_eq!(
                fixture.send(tag, body),
                (Verdict::StopBefore, vec![]),
                "{}",
                tag as char
            );
        }
        assert_eq!(
            fixture.send(b'B', b"\0other\0\0\0\0\0\0\0"),
            (Verdict::Forward, vec![]),
            "other names go on"
        );
    }

    #[test]
    fn raise_query_cannot_be_broken_out_of() {
        let query = raise_query("0A000", "x $churnstile$; DROP TABLE t; --'");
        assert_eq!(query.matches("$churnstile$").count(), 2);
        assert!(query.contains("E'x $ churnstile$; DROP TABLE t; --'''"));
    }
}

//! Protocol-level prepared statements under transaction pooling. A client's
//! statement names mean nothing on the next server connection it lands on,
//! so churnstile gives every distinct statement (query text and parameter
//! types) its own server-side name `churnstile_ps_<n>`, prepares it lazily on
//! whichever server connection the client uses, and keeps a per-server LRU
//! bounded by `max_prepared_statements`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::codec;

/// One distinct statement, shared by every client that prepared the same
/// query with the same parameter types.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct StatementDef {
    /// The name churnstile prepares it under on server connections.
    pub(super) server_name: String,
    /// The Parse body after the statement name: query, then parameter types.
    pub(super) parse_tail: Bytes,
}

impl StatementDef {
    /// A Parse message preparing this statement under its server name.
    pub(super) fn parse_message(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u8(b'P');
        out.put_u32(0);
        out.put_slice(self.server_name.as_bytes());
        out.put_u8(0);
        out.put_slice(&self.parse_tail);
        let len = (out.len() - start - 1) as u32;
        out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    }
}

/// Interns statements so identical ones share one server-side name.
#[derive(Debug, Default)]
pub struct StatementRegistry {
    inner: Mutex<RegistryInner>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    by_body: HashMap<Bytes, Weak<StatementDef>>,
    next_id: u64,
}

impl StatementRegistry {
    /// The shared definition for a Parse body tail, creating it if new
    /// (only then is the tail copied).
    pub(super) fn intern(&self, parse_tail: &[u8]) -> Arc<StatementDef> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(def) = inner.by_body.get(parse_tail).and_then(Weak::upgrade) {
            return def;
        }
        let parse_tail = Bytes::copy_from_slice(parse_tail);
        // Statements no client refers to any more are forgotten now and then.
        if inner.by_body.len() >= 1024 && inner.by_body.len().is_power_of_two() {
            inner.by_body.retain(|_, def| def.strong_count() > 0);
        }
        inner.next_id += 1;
        let def = Arc::new(StatementDef {
            server_name: format!("churnstile_ps_{}", inner.next_id),
            parse_tail: parse_tail.clone(),
        });
        inner.by_body.insert(parse_tail, Arc::downgrade(&def));
        def
    }
}

/// Server-side names prepared on one server connection, least recently
/// used first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct ServerStatements {
    names: VecDeque<String>,
}

impl ServerStatements {
    pub(super) fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Marks `name` as used now.
    pub(super) fn touch(&mut self, name: &str) {
        if let Some(index) = self.names.iter().position(|n| n == name) {
            let name = self.names.remove(index).unwrap_or_default();
            self.names.push_back(name);
        }
    }

    /// Records a statement as prepared; returns the names to close so at most
    /// `capacity` remain.
    pub(super) fn insert(&mut self, name: &str, capacity: usize) -> Vec<String> {
        self.forget(name);
        self.names.push_back(name.to_owned());
        let mut evicted = Vec::new();
        while self.names.len() > capacity.max(1) {
            evicted.extend(self.names.pop_front());
        }
        evicted
    }

    /// Keeps only the statements `keep` accepts.
    pub(super) fn retain(&mut self, keep: impl Fn(&String) -> bool) {
        self.names.retain(|name| keep(name));
    }

    pub(super) fn forget(&mut self, name: &str) {
        self.names.retain(|n| n != name);
    }

    pub(super) fn clear(&mut self) {
        self.names.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }
}

/// A Parse message, split into the client's name and the rest.
pub(super) fn split_parse(body: &[u8]) -> Option<(String, &[u8])> {
    let mut rest = body;
    let name = codec::take_cstr(&mut rest)?.to_owned();
    Some((name, rest))
}

/// A Bind message, split into portal, statement name and the rest.
pub(super) fn split_bind(body: &[u8]) -> Option<(String, String, &[u8])> {
    let mut rest = body;
    let portal = codec::take_cstr(&mut rest)?.to_owned();
    let statement = codec::take_cstr(&mut rest)?.to_owned();
    Some((portal, statement, rest))
}

/// A Bind message naming `statement` instead of the client's name.
pub(super) fn bind_message(out: &mut BytesMut, portal: &str, statement: &str, tail: &[u8]) {
    let start = out.len();
    out.put_u8(b'B');
    out.put_u32(0);
    for name in [portal, statement] {
        out.put_slice(name.as_bytes());
        out.put_u8(0);
    }
    out.put_slice(tail);
    let len = (out.len() - start - 1) as u32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

/// A Describe or Close message: its kind ('S' or 'P') and name.
pub(super) fn split_target(body: &[u8]) -> Option<(u8, String)> {
    let (&kind, mut rest) = body.split_first()?;
    let name = codec::take_cstr(&mut rest)?.to_owned();
    rest.is_empty().then_some((kind, name))
}

/// A Describe ('D') or Close ('C') message for a statement or portal.
pub(super) fn target_message(out: &mut BytesMut, tag: u8, kind: u8, name: &str) {
    out.put_u8(tag);
    out.put_u32((4 + 1 + name.len() + 1) as u32);
    out.put_u8(kind);
    out.put_slice(name.as_bytes());
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_statements_share_a_server_name() {
        let registry = StatementRegistry::default();
        let a = registry.intern(b"SELECT $1\0\0\x01\0\0\0\x17");
        let b = registry.intern(b"SELECT $1\0\0\x01\0\0\0\x17");
        let c = registry.intern(b"SELECT $1\0\0\x01\0\0\0\x19");
        assert_eq!(a.server_name, b.server_name);
        assert_ne!(a.server_name, c.server_name);
        drop((a, b));
        let again = registry.intern(b"SELECT $1\0\0\x01\0\0\0\x17");
        assert_ne!(again.server_name, c.server_name);
    }

    #[test]
    fn parse_message_round_trips() {
        let def = StatementDef {
            server_name: "churnstile_ps_1".into(),
            parse_tail: Bytes::from_static(b"SELECT 1\0\0\0"),
        };
        let mut out = BytesMut::new();
        def.parse_message(&mut out);
        let message = codec::decode_message(&mut out, 1000).unwrap().unwrap();
        assert_eq!(message.tag, b'P');
        assert_eq!(
            split_parse(&message.body).unwrap(),
            ("churnstile_ps_1".into(), &def.parse_tail[..])
        );
    }

    #[test]
    fn bind_is_rewritten_with_the_server_name() {
        let (portal, statement, tail) = split_bind(b"\0client_s\0\0\0\0\0\0\0").unwrap();
        assert_eq!((portal.as_str(), statement.as_str()), ("", "client_s"));
        let mut out = BytesMut::new();
        bind_message(&mut out, &portal, "churnstile_ps_9", tail);
        let message = codec::decode_message(&mut out, 1000).unwrap().unwrap();
        let (_, statement, rest) = split_bind(&message.body).unwrap();
        assert_eq!(statement, "churnstile_ps_9");
        assert_eq!(rest, tail);
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut statements = ServerStatements::default();
        assert!(statements.insert("a", 2).is_empty());
        assert!(statements.insert("b", 2).is_empty());
        statements.touch("a");
        assert_eq!(statements.insert("c", 2), vec!["b".to_owned()]);
        assert!(statements.contains("a") && statements.contains("c"));
        assert_eq!(statements.len(), 2);
    }

    #[test]
    fn malformed_messages_are_rejected() {
        assert!(split_parse(b"no terminator").is_none());
        assert!(split_bind(b"portal\0").is_none());
        assert!(split_target(b"").is_none());
        assert!(split_target(b"Sname\0extra").is_none());
        assert_eq!(split_target(b"Sname\0"), Some((b'S', "name".into())));
    }
}

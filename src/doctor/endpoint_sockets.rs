//! The rows the endpoint check reports and the pressure check judges: one
//! endpoint's sockets by state ([`EndpointSockets`], `endpoints` in the
//! JSON) and, for an outbound one, the ports it holds ([`Destination`]).
//! Both checks import this file, neither imports the other's rows.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

/// Which side opened an endpoint's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Direction {
    /// Connections this host opened, grouped by the address they go to.
    Outbound,
    /// Connections accepted by a listener here, grouped by its local address.
    Inbound,
}

/// The sockets of one endpoint (`endpoints` in the JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct EndpointSockets {
    pub(super) direction: Direction,
    /// The remote address (outbound) or the local listening address (inbound).
    pub(super) endpoint: SocketAddr,
    pub(super) total: usize,
    /// Sockets per state, by the kernel's state names.
    pub(super) states: BTreeMap<&'static str, usize>,
    /// Outbound: sockets holding a source port from the ephemeral range.
    pub(super) ephemeral_ports_in_use: Option<usize>,
    /// Outbound: `ephemeral_ports_in_use` as a percentage of the range.
    pub(super) ephemeral_use_percent: Option<f64>,
    /// Outbound: whether connect() may reuse TIME_WAIT ports toward it.
    pub(super) tcp_tw_reuse_applies: Option<bool>,
    /// Outbound, with `--interval`: new connections per second between samples.
    pub(super) observed_connects_per_second: Option<f64>,
}

/// One outbound destination to judge.
pub(super) struct Destination<'a> {
    pub(super) row: &'a EndpointSockets,
    /// Source ports connect() cannot hand out again now: all in use, less
    /// the TIME_WAIT ones where tcp_tw_reuse lets it take them back.
    pub(super) held_ports: usize,
}

/// `part` of `whole` in percent, to one decimal.
pub(super) fn percent(part: usize, whole: u32) -> f64 {
    round(part as f64 * 100.0 / f64::from(whole.max(1)))
}

/// One decimal is all a person reads; the JSON stays stable to compare.
pub(super) fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

//! TCP sockets by state per endpoint, busiest first, and for each outbound
//! destination the numbers behind its ephemeral-port pressure: source ports
//! in use against the range, and (with two samples) new connections per
//! second. `pressure.rs` judges them; `endpoint_sockets.rs` holds the rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use super::endpoint_sockets::{Destination, Direction, EndpointSockets, percent, round};
use super::pressure;
use super::report::Finding;
use crate::host::{EphemeralPorts, SocketEntry, SocketTableError, TcpState, tcp_sockets};

/// This namespace's TCP sockets at one moment.
pub(super) struct Sample {
    sockets: Vec<SocketEntry>,
    taken: Instant,
}

impl Sample {
    pub(super) fn take() -> Result<Sample, SocketTableError> {
        Ok(Sample {
            sockets: tcp_sockets()?,
            taken: Instant::now(),
        })
    }
}

/// Groups the latest sample by endpoint (the `top` busiest are returned)
/// and judges every outbound destination's ephemeral-port pressure.
pub(super) fn summarize(
    latest: &Sample,
    earlier: Option<&Sample>,
    ephemeral: Option<&EphemeralPorts>,
    top: usize,
) -> (Vec<EndpointSockets>, Vec<Finding>) {
    let groups = group(&latest.sockets, ephemeral);
    let rates = earlier.map(|earlier| connect_rates(earlier, latest, ephemeral));
    let mut endpoints: Vec<EndpointSockets> = groups
        .iter()
        .map(|((direction, endpoint), sockets)| {
            let mut states = BTreeMap::new();
            for socket in sockets.iter() {
                *states.entry(socket.state.as_str()).or_insert(0) += 1;
            }
            let mut row = EndpointSockets {
                direction: *direction,
                endpoint: *endpoint,
                total: sockets.len(),
                states,
                ephemeral_ports_in_use: None,
                ephemeral_use_percent: None,
                tcp_tw_reuse_applies: None,
                observed_connects_per_second: None,
            };
            if *direction == Direction::Outbound {
                if let Some(settings) = ephemeral {
                    let in_use = ports_in_use(sockets, settings, false);
                    row.ephemeral_ports_in_use = Some(in_use);
                    row.ephemeral_use_percent = Some(percent(in_use, settings.available()));
                    row.tcp_tw_reuse_applies = Some(settings.tw_reuse_applies(endpoint.ip()));
                }
                row.observed_connects_per_second = rates
                    .as_ref()
                    .map(|rates| rates.get(endpoint).copied().unwrap_or(0.0));
            }
            row
        })
        .collect();
    endpoints.sort_by(|a, b| {
        b.total
            .cmp(&a.total)
            .then(a.direction.cmp(&b.direction))
            .then(a.endpoint.cmp(&b.endpoint))
    });
    // Every destination is judged, not only the top ones, busiest first.
    let findings = match ephemeral {
        Some(settings) => {
            let destinations: Vec<Destination> = endpoints
                .iter()
                .filter(|row| row.direction == Direction::Outbound)
                .filter_map(|row| {
                    let sockets = groups.get(&(row.direction, row.endpoint))?;
                    let reuse = settings.tw_reuse_applies(row.endpoint.ip());
                    Some(Destination {
                        row,
                        held_ports: ports_in_use(sockets, settings, reuse),
                    })
                })
                .collect();
            pressure::judge(&destinations, settings)
        }
        None => Vec::new(),
    };
    endpoints.truncate(top);
    (endpoints, findings)
}

type Groups<'a> = HashMap<(Direction, SocketAddr), Vec<&'a SocketEntry>>;

/// A socket is inbound when a listener here has its local port, or (its
/// listener gone, as after a server closed first and exited) when its local
/// port is outside the ephemeral range and its peer's is inside.
fn group<'a>(sockets: &'a [SocketEntry], ephemeral: Option<&EphemeralPorts>) -> Groups<'a> {
    let listening: HashSet<u16> = sockets
        .iter()
        .filter(|socket| socket.state == TcpState::Listen)
        .map(|socket| socket.local.port())
        .collect();
    let accepted_here = |socket: &SocketEntry| {
        listening.contains(&socket.local.port())
            || ephemeral.is_some_and(|settings| {
                !settings.is_ephemeral(socket.local.port())
                    && settings.is_ephemeral(socket.remote.port())
            })
    };
    let mut groups: Groups = HashMap::new();
    for socket in sockets
        .iter()
        .filter(|socket| socket.state != TcpState::Listen)
    {
        let key = if accepted_here(socket) {
            (Direction::Inbound, socket.local)
        } else {
            (Direction::Outbound, socket.remote)
        };
        groups.entry(key).or_default().push(socket);
    }
    groups
}

/// Sockets holding an ephemeral source port; with `blocking_only`, leaving
/// out TIME_WAIT ones that tcp_tw_reuse lets connect() take again.
fn ports_in_use(sockets: &[&SocketEntry], settings: &EphemeralPorts, blocking_only: bool) -> usize {
    sockets
        .iter()
        .filter(|socket| settings.is_ephemeral(socket.local.port()))
        .filter(|socket| !(blocking_only && socket.state == TcpState::TimeWait))
        .count()
}

/// New outbound connections per second per destination: sockets in the
/// latest sample that the earlier one did not have. A connection opened and
/// closed in between still shows, in TIME_WAIT, for 60 s.
fn connect_rates(
    earlier: &Sample,
    latest: &Sample,
    ephemeral: Option<&EphemeralPorts>,
) -> HashMap<SocketAddr, f64> {
    let seconds = latest
        .taken
        .duration_since(earlier.taken)
        .as_secs_f64()
        .max(f64::EPSILON);
    let before: HashSet<(SocketAddr, SocketAddr)> = earlier
        .sockets
        .iter()
        .map(|socket| (socket.local, socket.remote))
        .collect();
    let mut new: HashMap<SocketAddr, usize> = HashMap::new();
    for ((direction, endpoint), sockets) in group(&latest.sockets, ephemeral) {
        if direction != Direction::Outbound {
            continue;
        }
        let count = sockets
            .iter()
            .filter(|socket| !before.contains(&(socket.local, socket.remote)))
            .count();
        *new.entry(endpoint).or_insert(0) += count;
    }
    new.into_iter()
        .map(|(endpoint, count)| (endpoint, round(count as f64 / seconds)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Severity;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn socket(local: &str, remote: &str, state: TcpState) -> SocketEntry {
        SocketEntry {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state,
            inode: 0,
        }
    }

    fn settings(tw_reuse: &str) -> EphemeralPorts {
        EphemeralPorts::parse("40000 40009", "", tw_reuse).unwrap()
    }

    fn sample(sockets: Vec<SocketEntry>, taken: Instant) -> Sample {
        Sample { sockets, taken }
    }

    #[test]
    fn groups_by_direction_and_counts_states() {
        let sockets = vec![
            socket("10.0.0.1:6432", "0.0.0.0:0", TcpState::Listen),
            socket("10.0.0.1:6432", "10.0.0.9:50000", TcpState::Established),
            socket("10.0.0.1:6432", "10.0.0.9:50001", TcpState::CloseWait),
            socket("10.0.0.1:40000", "10.0.0.5:5432", TcpState::Established),
            socket("10.0.0.1:40001", "10.0.0.5:5432", TcpState::TimeWait),
            socket("10.0.0.1:40002", "10.0.0.5:5432", TcpState::TimeWait),
            socket("10.0.0.1:7000", "10.0.0.5:5432", TcpState::Established),
        ];
        let now = Instant::now();
        let (rows, findings) = summarize(&sample(sockets, now), None, Some(&settings("0")), 10);
        assert_eq!(rows.len(), 2);
        let outbound = &rows[0];
        assert_eq!(outbound.direction, Direction::Outbound);
        assert_eq!(outbound.endpoint, "10.0.0.5:5432".parse().unwrap());
        assert_eq!(outbound.total, 4);
        assert_eq!(outbound.states["TIME_WAIT"], 2);
        assert_eq!(outbound.states["ESTABLISHED"], 2);
        // Port 7000 was bound explicitly, outside the range.
        assert_eq!(outbound.ephemeral_ports_in_use, Some(3));
        assert_eq!(outbound.ephemeral_use_percent, Some(30.0));
        assert_eq!(outbound.tcp_tw_reuse_applies, Some(false));
        assert_eq!(outbound.observed_connects_per_second, None);
        let inbound = &rows[1];
        assert_eq!(inbound.direction, Direction::Inbound);
        assert_eq!(inbound.endpoint, "10.0.0.1:6432".parse().unwrap());
        assert_eq!(inbound.total, 2);
        assert_eq!(inbound.ephemeral_ports_in_use, None);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity, Severity::Ok);
        assert_eq!(
            findings[0].summary,
            "at most 3 of 10 ephemeral ports in use toward one destination (10.0.0.5:5432)"
        );

        let (top_one, _) = summarize(
            &sample(
                vec![socket(
                    "10.0.0.1:40000",
                    "10.0.0.5:5432",
                    TcpState::TimeWait,
                )],
                now,
            ),
            None,
            None,
            0,
        );
        assert!(top_one.is_empty());
    }

    #[test]
    fn a_server_side_socket_whose_listener_is_gone_stays_inbound() {
        let sockets = vec![
            socket("10.0.0.1:6432", "10.0.0.9:40001", TcpState::TimeWait),
            socket("10.0.0.1:6432", "10.0.0.9:40002", TcpState::TimeWait),
        ];
        let latest = sample(sockets, Instant::now());
        let (rows, _) = summarize(&latest, None, Some(&settings("0")), 10);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].direction, Direction::Inbound);
        assert_eq!(rows[0].endpoint, "10.0.0.1:6432".parse().unwrap());
        // Without the range, only a listener tells.
        let (rows, _) = summarize(&latest, None, None, 10);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|row| row.direction == Direction::Outbound));
    }

    #[test]
    fn observed_rate_counts_connections_new_since_the_first_sample() {
        let start = Instant::now();
        let earlier = sample(
            vec![socket(
                "10.0.0.1:40000",
                "10.0.0.5:5432",
                TcpState::Established,
            )],
            start,
        );
        let latest = sample(
            vec![
                socket("10.0.0.1:40000", "10.0.0.5:5432", TcpState::Established),
                socket("10.0.0.1:40001", "10.0.0.5:5432", TcpState::TimeWait),
                socket("10.0.0.1:40002", "10.0.0.5:5432", TcpState::TimeWait),
                socket("10.0.0.1:40003", "10.0.0.6:5432", TcpState::Established),
            ],
            start + Duration::from_secs(4),
        );
        let rates = connect_rates(&earlier, &latest, None);
        assert_eq!(rates[&"10.0.0.5:5432".parse().unwrap()], 0.5);
        assert_eq!(rates[&"10.0.0.6:5432".parse().unwrap()], 0.3);

        let (rows, _) = summarize(&latest, Some(&earlier), Some(&settings("0")), 10);
        assert_eq!(rows[0].endpoint, "10.0.0.5:5432".parse().unwrap());
        assert_eq!(rows[0].observed_connects_per_second, Some(0.5));
        assert_eq!(rows[1].observed_connects_per_second, Some(0.3));
    }

    #[test]
    fn counts_real_time_wait_sockets_toward_a_loopback_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let earlier = Sample::take().unwrap();
        for _ in 0..5 {
            let client = TcpStream::connect(target).unwrap();
            let (mut accepted, _) = listener.accept().unwrap();
            drop(client);
            // Wait for the client's FIN, so the client side closed first
            // and holds the TIME_WAIT.
            let mut sink = [0u8; 1];
            assert_eq!(accepted.read(&mut sink).unwrap(), 0);
        }
        let latest = Sample::take().unwrap();
        let (rows, _) = summarize(&latest, Some(&earlier), None, usize::MAX);
        let row = rows
            .iter()
            .find(|row| row.direction == Direction::Outbound && row.endpoint == target)
            .unwrap_or_else(|| panic!("{target} not among {rows:?}"));
        assert_eq!(row.total, 5);
        assert_eq!(
            row.states.get("TIME_WAIT").copied().unwrap_or(0)
                + row.states.get("FIN_WAIT2").copied().unwrap_or(0),
            5,
            "{row:?}"
        );
        assert!(row.observed_connects_per_second.unwrap() > 0.0);
    }
}

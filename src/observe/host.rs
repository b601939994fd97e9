//! Host gauges from /proc, sampled by a background task every few seconds
//! (never per scrape, so a busy scraper cannot make churnstile walk the
//! socket tables): TIME_WAIT sockets toward each upstream and on each
//! listener, the ephemeral port range and how much of it is held, and
//! churnstile's open descriptors against RLIMIT_NOFILE. The admin console's
//! SHOW CHURN reads the same TIME_WAIT numbers.

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::host::{SocketEntry, TcpState, tcp_sockets};
use crate::metrics::{
    EPHEMERAL_PORTS, EPHEMERAL_PORTS_USED, LISTENER_TIME_WAIT, MAX_FDS, OPEN_FDS,
    UPSTREAM_TIME_WAIT,
};

/// How often the host is sampled.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_secs(5);

const PORT_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The sampler's latest TIME_WAIT count per upstream label.
static LATEST_UPSTREAM_TIME_WAIT: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());

/// What to watch: TCP upstreams as configured (`host`, `port`) and the
/// bound TCP listeners.
#[derive(Debug, Clone)]
pub(super) struct HostTargets {
    pub upstreams: Vec<(String, u16)>,
    pub listeners: Vec<SocketAddr>,
}

/// One reading of the host.
#[derive(Debug, Default, PartialEq)]
struct HostSample {
    /// TIME_WAIT count per upstream label (`host:port`).
    upstream_time_wait: Vec<(String, usize)>,
    listener_time_wait: Vec<(String, usize)>,
    ephemeral_ports: Option<usize>,
    ephemeral_ports_used: Option<usize>,
    open_fds: Option<usize>,
    max_fds: Option<u64>,
}

/// Sockets in TIME_WAIT whose far end is one of `addresses`.
fn time_wait_toward(sockets: &[SocketEntry], addresses: &[SocketAddr]) -> usize {
    sockets
        .iter()
        .filter(|socket| socket.state == TcpState::TimeWait && addresses.contains(&socket.remote))
        .count()
}

/// Sockets in TIME_WAIT with `listener` at either end (a wildcard
/// listener matches its port on any address).
fn time_wait_on(sockets: &[SocketEntry], listener: SocketAddr) -> usize {
    let matches = |end: SocketAddr| {
        end.port() == listener.port()
            && (listener.ip().is_unspecified() || end.ip() == listener.ip().to_canonical())
    };
    sockets
        .iter()
        .filter(|socket| {
            socket.state == TcpState::TimeWait && (matches(socket.local) || matches(socket.remote))
        })
        .count()
}

/// TIME_WAIT sockets toward each upstream (`host`, `port`), labelled `host:port`.
fn count_upstream_time_wait(
    sockets: &[SocketEntry],
    upstreams: &[(String, u16)],
) -> Vec<(String, usize)> {
    upstreams
        .iter()
        .map(|(host, port)| {
            let addresses: Vec<SocketAddr> = (host.as_str(), *port)
                .to_socket_addrs()
                .map(|resolved| resolved.map(|a| SocketAddr::new(a.ip().to_canonical(), a.port())))
                .map(Iterator::collect)
                .unwrap_or_default();
            (
                upstream_label(host, *port),
                time_wait_toward(sockets, &addresses),
            )
        })
        .collect()
}

/// How an upstream is named in the `upstream` label and SHOW CHURN.
pub fn upstream_label(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// Sockets on this host in TIME_WAIT toward each of `upstreams` (`host`,
/// `port`), by [`upstream_label`]: the sampler's latest numbers where it
/// watches the upstream, else read from /proc now.
pub async fn upstream_time_wait(upstreams: Vec<(String, u16)>) -> HashMap<String, usize> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    {
        let latest = LATEST_UPSTREAM_TIME_WAIT
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        counts.extend(latest.iter().cloned());
    }
    let unknown: Vec<(String, u16)> = upstreams
        .into_iter()
        .filter(|(host, port)| !counts.contains_key(&upstream_label(host, *port)))
        .collect();
    if !unknown.is_empty() {
        let read = tokio::task::spawn_blocking(move || {
            let sockets = tcp_sockets().unwrap_or_default();
            count_upstream_time_wait(&sockets, &unknown)
        })
        .await
        .unwrap_or_default();
        counts.extend(read);
    }
    counts
}

/// `ip_local_port_range`'s two numbers.
fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut numbers = text.split_whitespace().map(str::parse::<u16>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => Some((low, high)),
        _ => None,
    }
}

/// Distinct local ports within `range` that some socket holds.
fn ports_used(sockets: &[SocketEntry], (low, high): (u16, u16)) -> usize {
    sockets
        .iter()
        .map(|socket| socket.local.port())
        .filter(|port| (low..=high).contains(port))
        .collect::<BTreeSet<_>>()
        .len()
}

/// Reads /proc once. Blocking: run it off the async workers.
fn sample(targets: &HostTargets) -> HostSample {
    let sockets = match tcp_sockets() {
        Ok(sockets) => sockets,
        Err(error) => {
            tracing::debug!(%error, "host metrics: socket tables unreadable");
            Vec::new()
        }
    };
    let upstream_time_wait = count_upstream_time_wait(&sockets, &targets.upstreams);
    let listener_time_wait = targets
        .listeners
        .iter()
        .map(|listener| (listener.to_string(), time_wait_on(&sockets, *listener)))
        .collect();
    let range = std::fs::read_to_string(PORT_RANGE_FILE)
        .ok()
        .and_then(|text| parse_port_range(&text));
    HostSample {
        upstream_time_wait,
        listener_time_wait,
        ephemeral_ports: range.map(|(low, high)| usize::from(high - low) + 1),
        ephemeral_ports_used: range.map(|range| ports_used(&sockets, range)),
        open_fds: std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count),
        max_fds: Some(rustix::process::getrlimit(
            rustix::process::Resource::Nofile,
        ))
        .and_then(|limit| limit.current),
    }
}

fn publish(sample: &HostSample) {
    LATEST_UPSTREAM_TIME_WAIT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone_from(&sample.upstream_time_wait);
    for (upstream, count) in &sample.upstream_time_wait {
        metrics::gauge!(UPSTREAM_TIME_WAIT, "upstream" => upstream.clone()).set(*count as f64);
    }
    for (listener, count) in &sample.listener_time_wait {
        metrics::gauge!(LISTENER_TIME_WAIT, "listener" => listener.clone()).set(*count as f64);
    }
    let plain = [
        (EPHEMERAL_PORTS, sample.ephemeral_ports.map(|n| n as f64)),
        (
            EPHEMERAL_PORTS_USED,
            sample.ephemeral_ports_used.map(|n| n as f64),
        ),
        (OPEN_FDS, sample.open_fds.map(|n| n as f64)),
        (MAX_FDS, sample.max_fds.map(|n| n as f64)),
    ];
    for (name, value) in plain {
        if let Some(value) = value {
            metrics::gauge!(name).set(value);
        }
    }
}

/// Samples the host now and every [`SAMPLE_EVERY`] for as long as the
/// process runs; also runs the recorder's upkeep (draining histograms).
pub(super) fn spawn(targets: HostTargets, handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SAMPLE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let targets = targets.clone();
            if let Ok(sample) = tokio::task::spawn_blocking(move || sample(&targets)).await {
                publish(&sample);
            }
            handle.run_upkeep();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(local: &str, remote: &str, state: TcpState) -> SocketEntry {
        SocketEntry {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state,
            inode: 0,
        }
    }

    #[test]
    fn time_wait_is_counted_per_upstream_and_listener() {
        let sockets = [
            socket("127.0.0.1:40000", "127.0.0.1:5432", TcpState::TimeWait),
            socket("127.0.0.1:40001", "127.0.0.1:5432", TcpState::TimeWait),
            socket("127.0.0.1:40002", "127.0.0.1:5432", TcpState::Established),
            socket("127.0.0.1:5432", "127.0.0.1:40003", TcpState::TimeWait),
            socket("127.0.0.1:6432", "127.0.0.1:40004", TcpState::TimeWait),
            socket("127.0.0.1:40005", "127.0.0.1:6432", TcpState::TimeWait),
            socket("10.0.0.1:6432", "10.0.0.2:40006", TcpState::TimeWait),
        ];
        let upstream = ["127.0.0.1:5432".parse().unwrap()];
        assert_eq!(time_wait_toward(&sockets, &upstream), 2);
        assert_eq!(time_wait_on(&sockets, "127.0.0.1:6432".parse().unwrap()), 2);
        assert_eq!(time_wait_on(&sockets, "0.0.0.0:6432".parse().unwrap()), 3);
    }

    #[test]
    fn port_range_and_its_use() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("60999 32768"), None);
        assert_eq!(parse_port_range("garbage"), None);
        let sockets = [
            socket("127.0.0.1:40000", "127.0.0.1:5432", TcpState::TimeWait),
            socket("[::1]:40000", "[::1]:5432", TcpState::Established),
            socket("127.0.0.1:5432", "127.0.0.1:40000", TcpState::Established),
            socket("127.0.0.1:40001", "0.0.0.0:0", TcpState::Listen),
        ];
        assert_eq!(ports_used(&sockets, (32768, 60999)), 2);
    }

    #[test]
    fn a_sample_of_this_host_reads_descriptors_and_the_range() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let targets = HostTargets {
            upstreams: vec![
                ("127.0.0.1".into(), 5432),
                ("no-such-host.invalid".into(), 5432),
            ],
            listeners: vec![listener.local_addr().unwrap()],
        };
        let sample = sample(&targets);
        assert!(sample.open_fds.unwrap() >= 1);
        assert!(sample.max_fds.unwrap() >= sample.open_fds.unwrap() as u64);
        assert!(sample.ephemeral_ports.unwrap() > 0);
        assert_eq!(sample.upstream_time_wait.len(), 2);
        assert_eq!(
            sample.upstream_time_wait[1],
            ("no-such-host.invalid:5432".into(), 0)
        );
        assert_eq!(sample.listener_time_wait[0].1, 0);
    }
}

//! The kernel's ephemeral ports, the source ports `connect()` hands out:
//! `net.ipv4.ip_local_port_range`, `ip_local_reserved_ports` and
//! `tcp_tw_reuse`, which ports they cover, the connect rate they sustain
//! toward one destination, and the setting that reserves more.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

const SYSCTL_DIR: &str = "/proc/sys/net/ipv4";

/// How long a closed connection keeps its port in TIME_WAIT on the side that
/// closed first: the kernel's fixed TCP_TIMEWAIT_LEN.
pub const TIME_WAIT: Duration = Duration::from_secs(60);

/// The ephemeral-port settings of this network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EphemeralPorts {
    pub(crate) low: u16,
    pub(crate) high: u16,
    reserved: Vec<RangeInclusive<u16>>,
    /// `ip_local_reserved_ports` as the kernel prints it, e.g. `6432,8000-8080`.
    reserved_text: String,
    /// Ports in the range that are not reserved, counted once.
    available: u32,
    /// 0 off, 1 for every destination, 2 for loopback only.
    pub(crate) tw_reuse: u8,
}

/// A sysctl that could not be read or understood.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {file}: {reason}")]
pub(crate) struct EphemeralError {
    file: String,
    reason: String,
}

impl EphemeralPorts {
    /// Reads the three sysctls from /proc/sys/net/ipv4.
    pub(crate) fn read() -> Result<EphemeralPorts, EphemeralError> {
        let read = |name: &str| {
            let path = Path::new(SYSCTL_DIR).join(name);
            std::fs::read_to_string(&path).map_err(|error| EphemeralError {
                file: path.display().to_string(),
                reason: error.to_string(),
            })
        };
        EphemeralPorts::parse(
            &read("ip_local_port_range")?,
            &read("ip_local_reserved_ports")?,
            &read("tcp_tw_reuse")?,
        )
    }

    /// Parses the three sysctls' contents.
    pub(crate) fn parse(
        range: &str,
        reserved: &str,
        tw_reuse: &str,
    ) -> Result<EphemeralPorts, EphemeralError> {
        let invalid = |name: &str, text: &str| EphemeralError {
            file: format!("{SYSCTL_DIR}/{name}"),
            reason: format!("unexpected contents {:?}", text.trim()),
        };
        let mut bounds = range.split_whitespace().map(str::parse::<u16>);
        let (low, high) = match (bounds.next(), bounds.next(), bounds.next()) {
            (Some(Ok(low)), Some(Ok(high)), None) if low <= high => (low, high),
            _ => return Err(invalid("ip_local_port_range", range)),
        };
        let reserved_text = reserved.trim().to_owned();
        let reserved = parse_port_list(&reserved_text)
            .ok_or_else(|| invalid("ip_local_reserved_ports", reserved))?;
        let tw_reuse = tw_reuse
            .trim()
            .parse()
            .map_err(|_| invalid("tcp_tw_reuse", tw_reuse))?;
        let mut ports = EphemeralPorts {
            low,
            high,
            reserved,
            reserved_text,
            available: 0,
            tw_reuse,
        };
        ports.available = (low..=high)
            .filter(|&port| !ports.is_reserved(port))
            .count() as u32;
        Ok(ports)
    }

    /// Whether `connect()` may pick `port` as a source port.
    pub(crate) fn is_ephemeral(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port) && !self.is_reserved(port)
    }

    fn is_reserved(&self, port: u16) -> bool {
        self.reserved.iter().any(|range| range.contains(&port))
    }

    /// Source ports one destination can use at once.
    pub(crate) fn available(&self) -> u32 {
        self.available
    }

    /// New connections per second toward one destination that TIME_WAIT
    /// lets through for ever: every port comes back 60 s after its close.
    pub(crate) fn sustainable_rate(&self) -> f64 {
        f64::from(self.available()) / TIME_WAIT.as_secs_f64()
    }

    /// Whether tcp_tw_reuse lets `connect()` reuse a TIME_WAIT port toward
    /// `destination` (after a second, with TCP timestamps on).
    pub(crate) fn tw_reuse_applies(&self, destination: IpAddr) -> bool {
        match self.tw_reuse {
            1 => true,
            2 => destination.is_loopback(),
            _ => false,
        }
    }

    /// The `ip_local_reserved_ports` value that keeps what is reserved now
    /// and adds `ports`.
    pub(crate) fn reserved_with(&self, ports: &[u16]) -> String {
        let mut added: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|&port| !self.is_reserved(port))
            .collect();
        added.sort_unstable();
        added.dedup();
        let mut items: Vec<String> = Vec::new();
        if !self.reserved_text.is_empty() {
            items.push(self.reserved_text.clone());
        }
        items.extend(added.iter().map(u16::to_string));
        items.join(",")
    }

    /// `ip_local_reserved_ports` as the kernel prints it.
    pub(crate) fn reserved_text(&self) -> &str {
        &self.reserved_text
    }
}

/// `6432,8000-8080` → ranges; `None` when it is not such a list.
fn parse_port_list(text: &str) -> Option<Vec<RangeInclusive<u16>>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|item| {
            let (low, high) = item.split_once('-').unwrap_or((item, item));
            let (low, high) = (low.trim().parse().ok()?, high.trim().parse().ok()?);
            (low <= high).then_some(low..=high)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(range: &str, reserved: &str, tw_reuse: &str) -> EphemeralPorts {
        EphemeralPorts::parse(range, reserved, tw_reuse).unwrap()
    }

    #[test]
    fn parses_what_the_kernel_prints() {
        let parsed = ports("32768\t60999\n", "\n", "2\n");
        assert_eq!(
            (parsed.low, parsed.high, parsed.tw_reuse),
            (32768, 60999, 2)
        );
        assert_eq!(parsed.available(), 28232);
        assert!((parsed.sustainable_rate() - 470.533).abs() < 0.001);

        let reserved = ports("32768 60999", "6432,40000-40009\n", "0");
        assert_eq!(reserved.available(), 28222);
        assert!(!reserved.is_ephemeral(40005));
        assert!(reserved.is_ephemeral(40010));
        assert!(!reserved.is_ephemeral(6432));
        assert!(!reserved.is_ephemeral(32767));
        assert!(reserved.is_ephemeral(60999));
        assert!(!reserved.is_ephemeral(61000));
    }

    #[test]
    fn odd_contents_are_errors_naming_the_file() {
        for (range, reserved, tw_reuse, file) in [
            ("60999 32768", "", "0", "ip_local_port_range"),
            ("32768", "", "0", "ip_local_port_range"),
            ("32768 60999 1", "", "0", "ip_local_port_range"),
            ("a b", "", "0", "ip_local_port_range"),
            ("32768 60999", "8080-80", "0", "ip_local_reserved_ports"),
            ("32768 60999", "1,,2", "0", "ip_local_reserved_ports"),
            ("32768 60999", "99999", "0", "ip_local_reserved_ports"),
            ("32768 60999", "", "x", "tcp_tw_reuse"),
        ] {
            let error = EphemeralPorts::parse(range, reserved, tw_reuse).unwrap_err();
            assert!(error.to_string().contains(file), "{error}");
        }
    }

    #[test]
    fn tw_reuse_applies_by_setting_and_destination() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "10.0.0.5".parse().unwrap();
        let off = ports("1 2", "", "0");
        let all = ports("1 2", "", "1");
        let local_only = ports("1 2", "", "2");
        assert!(!off.tw_reuse_applies(loopback));
        assert!(all.tw_reuse_applies(remote));
        assert!(local_only.tw_reuse_applies(loopback));
        assert!(!local_only.tw_reuse_applies(remote));
    }

    #[test]
    fn reserved_value_keeps_what_is_there() {
        assert_eq!(ports("1 9", "", "0").reserved_with(&[7, 5, 7]), "5,7");
        assert_eq!(ports("1 9", "3,8-9", "0").reserved_with(&[5]), "3,8-9,5");
        assert_eq!(ports("1 9", "3,8-9", "0").reserved_with(&[8]), "3,8-9");
    }
}

//! systemd's notification protocol without libsystemd: one datagram per
//! state change to the socket `$NOTIFY_SOCKET` names (a path, or an
//! abstract name written `@name`): `READY=1` once the listeners accept,
//! `RELOADING=1` with `MONOTONIC_USEC` and then `READY=1` around a reload,
//! `STOPPING=1` when a shutdown starts, and `WATCHDOG=1` every half
//! `$WATCHDOG_USEC` while the runtime runs. Without `$NOTIFY_SOCKET` it
//! does nothing.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where systemd listens, and the socket churnstile writes from.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for; a silent one when it is
    /// unset, or (logged) when it names nothing usable.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let opened = address(&name).and_then(|addr| Ok((UnixDatagram::unbound()?, addr)));
            opened
                .inspect_err(|error| {
                    tracing::warn!(%error, socket = ?name, "NOTIFY_SOCKET unusable; systemd will not hear from churnstile");
                })
                .ok()
        });
        Notifier { target }
    }

    /// The listeners accept clients.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// A reload starts; `ready` says when it is over.
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let micros = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={micros}"));
    }

    /// A shutdown starts.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Sends `WATCHDOG=1` every half `$WATCHDOG_USEC` (when it is set for
    /// this process) from a task on the runtime, so a wedged runtime stops
    /// the pings and systemd restarts churnstile.
    pub fn spawn_watchdog(self: &std::sync::Arc<Self>) {
        let Some(period) = watchdog_period() else {
            return;
        };
        let notifier = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            loop {
                ticks.tick().await;
                notifier.send("WATCHDOG=1");
            }
        });
    }

    fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(error) = socket.send_to_addr(message.as_bytes(), addr) {
            tracing::warn!(%error, message, "cannot notify systemd");
        }
    }
}

/// The address `$NOTIFY_SOCKET` names: `@name` is in the abstract
/// namespace, anything else a path.
fn address(name: &OsStr) -> std::io::Result<SocketAddr> {
    match name.as_bytes().strip_prefix(b"@") {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name),
        None => SocketAddr::from_pathname(name),
    }
}

/// Half `$WATCHDOG_USEC`, when the watchdog is on and meant for this
/// process (`$WATCHDOG_PID`, when set, is its PID).
fn watchdog_period() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_str() != Some(&std::process::id().to_string())
    {
        return None;
    }
    let micros: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (micros > 0).then(|| Duration::from_micros(micros / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_names_are_abstract_and_others_paths() {
        let abstract_addr = address(OsStr::new("@churnstile/notify")).unwrap();
        assert_eq!(
            abstract_addr.as_abstract_name(),
            Some(&b"churnstile/notify"[..])
        );
        let path = address(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
    }
}

//! Running under systemd: the notifications churnstile sends to the
//! socket `$NOTIFY_SOCKET` names (a path or an abstract `@name`), in order
//! (READY=1, RELOADING=1 and READY=1 around SIGHUP, STOPPING=1, and
//! WATCHDOG=1 every half `$WATCHDOG_USEC`), and contrib/churnstile.service
//! passing `systemd-analyze verify`.

mod support;

use std::os::linux::net::SocketAddrExt;
use std::process::Command;

use support::shutdown::{PROMPTLY, wait_exit};
use support::{Proxy, Signal};
use tokio::net::UnixDatagram;

const BINARY: &str = env!("CARGO_BIN_EXE_churnstile");
const UNIT: &str = "contrib/churnstile.service";

/// A config that needs no upstream: no pool connects before a client asks.
const CONFIG: &str = "[listen]\n\
                      postgres = [\"127.0.0.1:{port}\"]\n\
                      unix_socket_dir = \"{socket_dir}\"\n\
                      [databases.app]\n\
                      port = 1\n";

/// Notifications as churnstile sends them, WATCHDOG=1 counted apart.
struct Received {
    socket: UnixDatagram,
    watchdogs: usize,
}

impl Received {
    /// The next notification other than WATCHDOG=1.
    async fn next(&mut self) -> String {
        loop {
            let mut buf = [0; 512];
            let length = tokio::time::timeout(PROMPTLY, self.socket.recv(&mut buf))
                .await
                .expect("a notification within 5 s")
                .unwrap();
            let message = String::from_utf8(buf[..length].to_vec()).unwrap();
            if message != "WATCHDOG=1" {
                return message;
            }
            self.watchdogs += 1;
        }
    }

    /// Waits until `count` WATCHDOG=1 have come, and nothing else.
    async fn watchdogs(&mut self, count: usize) {
        while self.watchdogs < count {
            let mut buf = [0; 512];
            let length = tokio::time::timeout(PROMPTLY, self.socket.recv(&mut buf))
                .await
                .expect("WATCHDOG=1 within 5 s")
                .unwrap();
            assert_eq!(&buf[..length], b"WATCHDOG=1");
            self.watchdogs += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_come_in_order_with_watchdog_pings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let mut received = Received {
        socket: UnixDatagram::bind(&path).unwrap(),
        watchdogs: 0,
    };
    let env = [
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "200000"),
    ];
    let mut proxy = Proxy::start_with_env(CONFIG, &env);

    assert_eq!(received.next().await, "READY=1");
    received.watchdogs(3).await;
    proxy.send_signal(Signal::HUP);
    let reloading = received.next().await;
    let micros = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"));
    assert!(micros.parse::<u64>().unwrap() > 0, "{reloading:?}");
    assert_eq!(received.next().await, "READY=1");
    proxy.send_signal(Signal::INT);
    assert_eq!(received.next().await, "STOPPING=1");
    assert_eq!(wait_exit(&mut proxy, PROMPTLY), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abstract_notify_socket_is_reached_too() {
    let name = format!("churnstile-test-{}-{}", std::process::id(), line!());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut received = Received {
        socket: UnixDatagram::from_std(socket).unwrap(),
        watchdogs: 0,
    };
    let notify_socket = format!("@{name}");
    let mut proxy = Proxy::start_with_env(CONFIG, &[("NOTIFY_SOCKET", &notify_socket)]);

    assert_eq!(received.next().await, "READY=1");
    proxy.send_signal(Signal::TERM);
    assert_eq!(received.next().await, "STOPPING=1");
    assert_eq!(wait_exit(&mut proxy, PROMPTLY), Some(0));
    assert_eq!(received.watchdogs, 0, "no WATCHDOG_USEC, no pings");
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success());
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(unit.contains("\nType=notify\n"), "{unit}");
    assert!(unit.contains("\nExecReload=/bin/kill -HUP $MAINPID\n"));
    // verify checks that the binary exists: point it at the one under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("churnstile.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/churnstile", BINARY)).unwrap();

    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "{stderr}");
    let about_the_unit: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("churnstile.service"))
        .collect();
    assert_eq!(about_the_unit, Vec::<&str>::new(), "{stderr}");
}

//! Free TCP ports on 127.0.0.1 for throwaway servers and proxies.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// Ports this test process has handed out; never handed out twice, so two
/// servers in one test binary cannot be given the same port.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A port that was free a moment ago: bind 127.0.0.1:0, read the port the
/// kernel chose, close the socket. Another process may still take it before
/// the caller binds it, so servers retry with a new port on "address in use".
pub fn free_port() -> u16 {
    let mut ports = handed_out()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:0 to find a free port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("reading the port of 127.0.0.1:0: {e}"))
            .port();
        if ports.insert(port) {
            return port;
        }
    }
}

//! Opening listening sockets: TCP with the options a pooler needs, and the
//! PostgreSQL-style Unix socket `DIR/.s.PGSQL.PORT` with stale-file recovery.
//! A failed bind says which process holds the address, when /proc shows it.

use std::fmt;
use std::fs;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, UnixListener, UnixStream};

use crate::host::{ProcessInfo, port_owner, socket_path_owner};
use crate::stream::set_tcp_options;

/// Connections the kernel queues before we accept them; bursts of new
/// clients are exactly what a pooler is for.
const BACKLOG: i32 = 1024;

/// What a listener listens on, as shown in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Why a listener could not be opened, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {endpoint}: address already in use ({})", held_by(.owner.as_ref()))]
    InUse {
        endpoint: Endpoint,
        owner: Option<ProcessInfo>,
    },
    #[error("cannot listen on {endpoint}: permission denied")]
    PermissionDenied { endpoint: Endpoint },
    #[error("cannot listen on {endpoint}: a file that is not a socket is in the way")]
    NotASocket { endpoint: Endpoint },
    #[error("cannot listen on {endpoint}: {source}")]
    Io {
        endpoint: Endpoint,
        source: io::Error,
    },
}

fn held_by(owner: Option<&ProcessInfo>) -> String {
    match owner {
        Some(process) => format!("held by {process}"),
        None => "owner not visible in /proc".to_owned(),
    }
}

/// Listens on `addr` with SO_REUSEADDR (restarts are not blocked by
/// TIME_WAIT), IPV6_V6ONLY for IPv6 addresses, a backlog of 1024, and the
/// TCP options accepted clients inherit ([`set_tcp_options`]).
///
/// Must be called inside a tokio runtime.
pub fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> Result<TcpListener, BindError> {
    let listen = || -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        set_tcp_options(socket2::SockRef::from(&socket))?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        TcpListener::from_std(socket.into())
    };
    listen().map_err(|error| bind_failed(Endpoint::Tcp(addr), error, || port_owner(addr)))
}

/// Listens on the Unix socket `DIR/.s.PGSQL.PORT`, where psql and libpq look
/// for it, and returns the listener with the socket's path (to remove at
/// shutdown). A socket file left by a dead server is replaced; one that
/// still answers is an error naming its owner. Like PostgreSQL, the socket
/// is mode 0777: access is governed by the directory.
///
/// Must be called inside a tokio runtime.
pub fn bind_unix(dir: &Path, port: u16) -> Result<(UnixListener, PathBuf), BindError> {
    let path = dir.join(format!(".s.PGSQL.{port}"));
    let listener = bind_unix_path(&path)?;
    Ok((listener, path))
}

/// Binds a Unix socket at `path`, replacing a stale socket file left by a
/// server that died, refusing a live one with its owner named.
pub fn bind_unix_path(path: &Path) -> Result<UnixListener, BindError> {
    let path = path.to_path_buf();
    let endpoint = || Endpoint::Unix(path.clone());
    let owner = || socket_path_owner(&path);
    match probe(&path).map_err(|error| bind_failed(endpoint(), error, owner))? {
        SocketFile::Absent => {}
        SocketFile::Stale => match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => return Err(bind_failed(endpoint(), error, owner)),
        },
        SocketFile::NotASocket => {
            return Err(BindError::NotASocket {
                endpoint: endpoint(),
            });
        }
        SocketFile::Live { peer_pid } => {
            let owner = peer_pid.and_then(ProcessInfo::of_pid).or_else(owner);
            return Err(BindError::InUse {
                endpoint: endpoint(),
                owner,
            });
        }
    }
    listen_unix(&path).map_err(|error| bind_failed(endpoint(), error, owner))
}

fn listen_unix(path: &Path) -> io::Result<UnixListener> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::unix(path)?)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o777))?;
    socket.listen(BACKLOG)?;
    UnixListener::from_std(socket.into())
}

/// What is at a Unix socket path before we bind it.
enum SocketFile {
    Absent,
    NotASocket,
    /// A socket file nobody listens on: a server died without removing it.
    Stale,
    /// Something accepts connections there; `peer_pid` is the pid that
    /// called listen(), when the kernel could tell us.
    Live {
        peer_pid: Option<i32>,
    },
}

fn probe(path: &Path) -> io::Result<SocketFile> {
    match fs::symlink_metadata(path) {
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(SocketFile::Absent),
        Err(error) => return Err(error),
        Ok(metadata) if !metadata.file_type().is_socket() => return Ok(SocketFile::NotASocket),
        Ok(_) => {}
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    // Non-blocking, so a live server with a full backlog answers EAGAIN
    // instead of stalling our startup.
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::unix(path)?) {
        Ok(()) => Ok(SocketFile::Live {
            peer_pid: peer_pid(socket),
        }),
        Err(error) if error.kind() == ErrorKind::WouldBlock => {
            Ok(SocketFile::Live { peer_pid: None })
        }
        Err(error) if error.kind() == ErrorKind::ConnectionRefused => Ok(SocketFile::Stale),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(SocketFile::Absent),
        Err(error) => Err(error),
    }
}

/// SO_PEERCRED names the listener's process even when its fds are hidden
/// from us (another user's server), which the /proc scan cannot see.
fn peer_pid(connected: Socket) -> Option<i32> {
    let stream = UnixStream::from_std(connected.into()).ok()?;
    stream.peer_cred().ok()?.pid()
}

fn bind_failed(
    endpoint: Endpoint,
    error: io::Error,
    owner: impl FnOnce() -> Option<ProcessInfo>,
) -> BindError {
    match error.kind() {
        ErrorKind::AddrInUse => BindError::InUse {
            endpoint,
            owner: owner(),
        },
        ErrorKind::PermissionDenied => BindError::PermissionDenied { endpoint },
        _ => BindError::Io {
            endpoint,
            source: error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    /// Holds a port from a separate python3 process until dropped.
    struct PortHolder {
        child: Child,
        port: u16,
    }

    impl PortHolder {
        fn spawn() -> PortHolder {
            const SCRIPT: &str = "import socket,time\n\
                s = socket.socket()\n\
                s.bind(('127.0.0.1', 0))\n\
                s.listen()\n\
                print(s.getsockname()[1], flush=True)\n\
                time.sleep(30)\n";
            let mut child = Command::new("python3")
                .args(["-c", SCRIPT])
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3 runs");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut holder = PortHolder { child, port: 0 };
            // The port is printed only once the socket listens; a python
            // that fails exits and the read ends at EOF.
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            holder.port = line
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("python3 printed {line:?}"));
            holder
        }
    }

    impl Drop for PortHolder {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn own_pid() -> String {
        format!("pid {}", std::process::id())
    }

    #[tokio::test]
    async fn binds_ipv4_and_ipv6() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let listener = bind_tcp(addr, false).unwrap();
            let bound = listener.local_addr().unwrap();
            assert_eq!(bound.ip(), addr.ip());
            assert_ne!(bound.port(), 0);
        }
    }

    /// `Stream::accepted_tcp` sets no options of its own: it relies on the
    /// kernel copying the listener's.
    #[tokio::test]
    async fn accepted_connections_inherit_nodelay_and_keepalive() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let listener = bind_tcp(addr.parse().unwrap(), false).unwrap();
            let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
            let (accepted, _) = tokio::try_join!(listener.accept(), client).unwrap();
            let accepted = socket2::SockRef::from(&accepted.0);
            assert!(accepted.tcp_nodelay().unwrap());
            assert!(accepted.keepalive().unwrap());
            assert_eq!(
                accepted.tcp_keepalive_time().unwrap(),
                std::time::Duration::from_secs(60)
            );
            assert_eq!(
                accepted.tcp_keepalive_interval().unwrap(),
                std::time::Duration::from_secs(10)
            );
            assert_eq!(accepted.tcp_keepalive_retries().unwrap(), 6);
        }
    }

    #[tokio::test]
    async fn so_reuseport_lets_two_listeners_share_a_port() {
        let first = bind_tcp("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind_tcp(addr, true).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        assert!(matches!(
            bind_tcp(addr, false).unwrap_err(),
            BindError::InUse { .. }
        ));
    }

    #[tokio::test]
    async fn a_port_we_hold_names_this_process() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let error = bind_tcp(addr, false).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, BindError::InUse { owner: Some(_), .. }),
            "{message}"
        );
        assert!(
            message.starts_with(&format!(
                "cannot listen on {addr}: address already in use (held by {} \"",
                own_pid()
            )),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_port_another_process_holds_names_it() {
        let holder = PortHolder::spawn();
        let addr: SocketAddr = format!("127.0.0.1:{}", holder.port).parse().unwrap();
        let message = bind_tcp(addr, false).unwrap_err().to_string();
        assert!(
            message.contains(&format!("cannot listen on {addr}: address already in use")),
            "{message}"
        );
        assert!(
            message.contains(&format!("held by pid {} \"python3", holder.child.id())),
            "{message}"
        );
    }

    #[tokio::test]
    async fn an_address_not_on_this_host_is_an_os_error() {
        let addr: SocketAddr = "192.0.2.1:6432".parse().unwrap();
        let error = bind_tcp(addr, false).unwrap_err();
        assert!(matches!(error, BindError::Io { .. }), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("cannot listen on 192.0.2.1:6432: "),
            "{error}"
        );
    }

    #[test]
    fn messages_read_as_one_line() {
        let endpoint = Endpoint::Tcp("127.0.0.1:6432".parse().unwrap());
        let owner = ProcessInfo {
            pid: 1234,
            command: "python3 -m http.server 6432".into(),
        };
        let cases = [
            (
                BindError::InUse {
                    endpoint: endpoint.clone(),
                    owner: Some(owner),
                },
                "cannot listen on 127.0.0.1:6432: address already in use (held by pid 1234 \"python3 -m http.server 6432\")",
            ),
            (
                BindError::InUse {
                    endpoint: endpoint.clone(),
                    owner: None,
                },
                "cannot listen on 127.0.0.1:6432: address already in use (owner not visible in /proc)",
            ),
            (
                BindError::PermissionDenied { endpoint },
                "cannot listen on 127.0.0.1:6432: permission denied",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected);
        }
    }

    #[tokio::test]
    async fn unix_socket_is_created_open_to_all() {
        let dir = tempfile::tempdir().unwrap();
        let (_listener, path) = bind_unix(dir.path(), 6432).unwrap();
        assert_eq!(path, dir.path().join(".s.PGSQL.6432"));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
        std::os::unix::net::UnixStream::connect(&path).unwrap();
    }

    #[tokio::test]
    async fn stale_unix_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s.PGSQL.6432");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a closed listener leaves its file behind");
        let (_listener, bound) = bind_unix(dir.path(), 6432).unwrap();
        assert_eq!(bound, path);
        std::os::unix::net::UnixStream::connect(&path).unwrap();
    }

    #[tokio::test]
    async fn live_unix_socket_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s.PGSQL.6432");
        let _held = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let error = bind_unix(dir.path(), 6432).unwrap_err();
        let expected = format!(
            "cannot listen on {}: address already in use (held by {} \"",
            path.display(),
            own_pid()
        );
        assert!(error.to_string().starts_with(&expected), "{error}");
        assert!(path.exists(), "a live socket is left alone");
    }

    #[tokio::test]
    async fn a_regular_file_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s.PGSQL.6432");
        fs::write(&path, "keep me").unwrap();
        let error = bind_unix(dir.path(), 6432).unwrap_err();
        assert!(matches!(error, BindError::NotASocket { .. }), "{error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
    }
}

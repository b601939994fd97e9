//! `churnstile doctor` as an operator runs it, on real sockets: sockets piled
//! up in TIME_WAIT toward a port, a port someone else holds (and the startup
//! error that names the same process), a program that leaves sockets in
//! CLOSE_WAIT, a listen port inside the ephemeral range, and PostgreSQL and
//! MySQL databases that do and do not accept churnstile's login.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use churnstile::host::{SocketEntry, TcpState, tcp_sockets};
use serde_json::Value;
use support::{
    MYSQL_APP_USER, MariaDbServer, NATIVE_USER, PgServer, Proxy, child, free_port,
    mysql_proxy_config_with, pg_proxy_config,
};

const POLL: Duration = Duration::from_millis(20);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

fn own_pid() -> u32 {
    std::process::id()
}

/// Runs `churnstile doctor --json ARGS`; checks the exit code is the one
/// the report's status promises and returns both.
fn doctor_json(args: &[&str]) -> (i32, Value) {
    let mut full = vec!["doctor", "--json"];
    full.extend_from_slice(args);
    let exit = Proxy::spawn_expect_exit(&full);
    let report: Value = serde_json::from_str(&exit.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}); stdout:\n{}\nstderr:\n{}",
            exit.stdout, exit.stderr
        )
    });
    let promised = match report["status"].as_str() {
        Some("healthy") => 0,
        Some("warnings") => 1,
        Some("problems") => 2,
        other => panic!("unknown status {other:?}"),
    };
    assert_eq!(exit.code, promised, "{report:#}");
    (exit.code, report)
}

fn doctor_text(args: &[&str]) -> String {
    let mut full = vec!["doctor"];
    full.extend_from_slice(args);
    Proxy::spawn_expect_exit(&full).stdout
}

/// The `database.login` finding about `subject` ("database D as U").
fn login_finding<'a>(report: &'a Value, subject: &str) -> &'a Value {
    findings(report, "database.login")
        .into_iter()
        .find(|finding| finding["subject"] == subject)
        .unwrap_or_else(|| panic!("no finding about {subject}"))
}

/// Asserts that `finding`'s `field` contains `part`.
fn assert_says(finding: &Value, field: &str, part: &str) {
    assert!(
        finding[field].as_str().unwrap_or_default().contains(part),
        "{field} lacks {part:?}: {finding:#}"
    );
}

fn findings<'a>(report: &'a Value, check: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .expect("findings is an array")
        .iter()
        .filter(|finding| finding["check"] == check)
        .collect()
}

/// Polls `condition` every 20 ms until it holds; panics with `what` after 10 s.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {SETTLE_TIMEOUT:?}"
        );
        std::thread::sleep(POLL);
    }
}

fn count_sockets(matches: impl Fn(&SocketEntry) -> bool) -> usize {
    tcp_sockets()
        .expect("/proc/net/tcp is readable")
        .iter()
        .filter(|socket| matches(socket))
        .count()
}

#[test]
fn time_wait_sockets_toward_a_loopback_port_are_counted() {
    const CLOSED: usize = 200;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    for _ in 0..CLOSED {
        let client = TcpStream::connect(target).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        drop(client);
        // The client's FIN has arrived, so it closed first and will hold
        // the TIME_WAIT once our FIN (on drop) reaches it.
        assert_eq!(accepted.read(&mut [0u8; 1]).unwrap(), 0);
    }
    wait_until("TIME_WAIT toward the port", || {
        count_sockets(|s| s.remote == target && s.state == TcpState::TimeWait) >= CLOSED
    });

    let pid = own_pid().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["--pid", &pid, "--listen", &listen, "--top", "100000"];
    let (_, report) = doctor_json(&args);
    let row = report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["direction"] == "outbound" && row["endpoint"] == target.to_string())
        .unwrap_or_else(|| panic!("no outbound row for {target}: {report:#}"));
    assert!(
        row["states"]["TIME_WAIT"].as_u64().unwrap() >= CLOSED as u64,
        "{row:#}"
    );
    assert!(row["total"].as_u64().unwrap() >= CLOSED as u64, "{row:#}");
    assert!(
        row["ephemeral_ports_in_use"].as_u64().unwrap() >= CLOSED as u64,
        "{row:#}"
    );
    assert_eq!(
        row["tcp_tw_reuse_applies"].as_bool(),
        Some(report["ephemeral"]["tcp_tw_reuse"] != 0)
    );
    assert_eq!(report["ephemeral"]["time_wait_seconds"], 60);

    let text = doctor_text(&args);
    let line = text
        .lines()
        .find(|line| line.starts_with(&format!("  outbound  {target} ")))
        .unwrap_or_else(|| panic!("no outbound line for {target}:\n{text}"));
    assert!(line.contains("TIME_WAIT"), "{line}");
}

#[test]
fn a_held_port_is_named_by_the_doctor_and_by_churnstile_at_startup() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let pid = own_pid().to_string();

    let (code, report) = doctor_json(&["--listen", &addr, "--pid", &pid]);
    assert_eq!(code, 2);
    let listen = &report["listen"][0];
    assert_eq!(listen["address"], addr);
    assert_eq!(listen["state"], "in_use");
    assert_eq!(listen["owner"]["pid"], own_pid());
    let command = listen["owner"]["command"].as_str().unwrap();
    let exe = std::env::current_exe().unwrap();
    let binary = exe.file_name().unwrap().to_str().unwrap();
    assert!(command.starts_with(binary), "{command}");
    let held_by = format!("pid {} {command:?}", own_pid());
    let in_use = findings(&report, "listen.in_use");
    assert_eq!(in_use.len(), 1);
    assert_eq!(in_use[0]["severity"], "problem");
    assert_eq!(in_use[0]["summary"], format!("in use by {held_by}"));

    let text = doctor_text(&["--listen", &addr, "--pid", &pid]);
    assert!(
        text.contains(&format!("PROBLEM  listen {addr}: in use by {held_by}\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("do:    stop pid {} or move it", own_pid())),
        "{text}"
    );

    let startup = Proxy::spawn_expect_exit(&[
        "--listen",
        &addr,
        "--upstream",
        "postgres://app:secret@127.0.0.1:9/app",
    ]);
    assert_eq!(startup.code, 1, "{}", startup.stderr);
    assert!(
        startup.stderr.contains(&format!(
            "cannot listen on {addr}: address already in use (held by {held_by})"
        )),
        "{}",
        startup.stderr
    );
}

/// A python3 server that accepts connections and never closes them.
struct NeverCloses {
    child: Child,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl NeverCloses {
    fn spawn() -> NeverCloses {
        const SCRIPT: &str = "import socket\n\
            s = socket.socket()\n\
            s.bind(('127.0.0.1', 0))\n\
            s.listen()\n\
            print(s.getsockname()[1], flush=True)\n\
            held = []\n\
            while True:\n\
            \x20   conn, _ = s.accept()\n\
            \x20   held.append(conn)\n\
            \x20   print(len(held), flush=True)\n";
        let mut command = Command::new("python3");
        command.args(["-c", SCRIPT]).stdout(Stdio::piped());
        let mut child = child::spawn_supervised(command).expect("python3 runs");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut server = NeverCloses {
            child,
            stdout,
            port: 0,
        };
        server.port = server.read_number() as u16;
        server
    }

    /// The next number it prints: its port, then the count of accepted
    /// connections after each accept.
    fn read_number(&mut self) -> usize {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim()
            .parse()
            .unwrap_or_else(|_| panic!("python3 printed {line:?}"))
    }
}

impl Drop for NeverCloses {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn close_wait_sockets_are_reported_with_their_pid() {
    const LEFT_OPEN: usize = 5;
    let mut server = NeverCloses::spawn();
    let target = SocketAddr::from(([127, 0, 0, 1], server.port));
    for accepted in 1..=LEFT_OPEN {
        let client = TcpStream::connect(target).unwrap();
        assert_eq!(server.read_number(), accepted);
        drop(client);
    }
    wait_until("CLOSE_WAIT on the server's side", || {
        count_sockets(|s| s.local == target && s.state == TcpState::CloseWait) == LEFT_OPEN
    });
    let pid = server.child.id();
    let listen = format!("127.0.0.1:{}", free_port());

    let (code, report) = doctor_json(&["--pid", &pid.to_string(), "--listen", &listen]);
    assert!(code >= 1, "{report:#}");
    let row = &report["processes"][0];
    assert_eq!(row["pid"], pid);
    assert_eq!(row["close_wait"], LEFT_OPEN);
    assert_eq!(row["unidentified_sockets"], 0);
    assert!(
        row["command"].as_str().unwrap().starts_with("python3 -c"),
        "{row:#}"
    );
    let close_wait = findings(&report, "process.close_wait");
    assert_eq!(close_wait.len(), 1, "{report:#}");
    assert_eq!(close_wait[0]["severity"], "warning");
    assert!(
        close_wait[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with(&format!("pid {pid} \"python3")),
        "{:#}",
        close_wait[0]
    );
    assert!(
        close_wait[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "{LEFT_OPEN} sockets in CLOSE_WAIT (peers 127.0.0.1:"
            )),
        "{:#}",
        close_wait[0]
    );

    // Scanning every process finds it too.
    let (_, report) = doctor_json(&["--listen", &listen, "--top", "100000"]);
    let row = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not among the processes"));
    assert_eq!(row["close_wait"], LEFT_OPEN);
}

fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn a_listen_port_inside_the_ephemeral_range_gets_the_sysctl_fix() {
    // The kernel picks free_port()'s port from the ephemeral range, skipping
    // reserved ports: exactly what a client socket might get.
    let port = free_port();
    let range: Vec<u16> = sysctl("ip_local_port_range")
        .split_whitespace()
        .map(|bound| bound.parse().unwrap())
        .collect();
    assert!((range[0]..=range[1]).contains(&port));
    let reserved = sysctl("ip_local_reserved_ports");
    let value = if reserved.is_empty() {
        port.to_string()
    } else {
        format!("{reserved},{port}")
    };
    let fix = format!("`sysctl -w net.ipv4.ip_local_reserved_ports={value}`");
    let addr = format!("127.0.0.1:{port}");
    let below = format!("127.0.0.1:{}", range[0] - 1);
    let pid = own_pid().to_string();

    let (code, report) = doctor_json(&["--listen", &addr, "--listen", &below, "--pid", &pid]);
    assert!(code >= 1, "{report:#}");
    assert_eq!(report["listen"][0]["inside_ephemeral_range"], true);
    assert_eq!(report["listen"][1]["inside_ephemeral_range"], false);
    let warnings = findings(&report, "listen.ephemeral");
    assert_eq!(warnings.len(), 1, "{report:#}");
    let warning = warnings[0];
    assert_eq!(warning["severity"], "warning");
    assert_eq!(warning["subject"], format!("listen {addr}"));
    assert_eq!(
        warning["summary"],
        format!(
            "port {port} is inside net.ipv4.ip_local_port_range ({}-{}) and not in \
             net.ipv4.ip_local_reserved_ports",
            range[0], range[1]
        )
    );
    let action = warning["action"].as_str().unwrap();
    assert!(action.contains(&fix), "{action}");
    assert!(
        action.contains(&format!("`net.ipv4.ip_local_reserved_ports = {value}`")),
        "{action}"
    );

    // churnstile warns the same at startup.
    let proxy = Proxy::start_args(
        &[
            "--listen",
            &addr,
            "--upstream",
            "postgres://app:secret@127.0.0.1:9/app",
        ],
        port,
    );
    // The listener accepts as soon as it is bound; the warning follows.
    let expected = format!("listen {addr}: port {port} is inside net.ipv4.ip_local_port_range");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stderr = proxy.stderr();
    while !stderr.contains(&expected) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        stderr = proxy.stderr();
    }
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains(&fix), "{stderr}");
}

#[test]
fn each_database_login_is_tried_as_each_user() {
    let pg = PgServer::start();
    let down_port = free_port();
    let config = pg_proxy_config(
        &pg,
        &format!(
            r#"
            [databases.down]
            host = "127.0.0.1"
            port = {down_port}

            [users.wrong_password]
            password = "whatever"
            upstream_user = "md5_user"
            upstream_password = "not-md5_pass"
            "#
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let listen_port = free_port();
    let config = config
        .replace("{port}", &listen_port.to_string())
        .replace("{socket_dir}", &dir.path().display().to_string());
    let config_path = dir.path().join("churnstile.toml");
    std::fs::write(&config_path, config).unwrap();
    let pid = own_pid().to_string();

    let (code, report) = doctor_json(&["--config", config_path.to_str().unwrap(), "--pid", &pid]);
    assert_eq!(code, 2);
    let logins = report["databases"].as_array().unwrap();
    let outcome: Vec<(&str, &str, bool)> = logins
        .iter()
        .map(|login| {
            (
                login["database"].as_str().unwrap(),
                login["user"].as_str().unwrap(),
                login["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcome,
        [
            ("app", "md5_user", true),
            ("app", "plain_user", true),
            ("app", "scram_user", true),
            ("app", "wrong_password", false),
            ("down", "md5_user", false),
            ("down", "plain_user", false),
            ("down", "scram_user", false),
            ("down", "wrong_password", false),
        ]
    );
    assert!(logins[0]["login_ms"].as_u64().is_some());
    assert_eq!(logins[0]["upstream"], format!("127.0.0.1:{}", pg.port()));
    assert_eq!(
        logins[3]["error"],
        "upstream server refused login: password authentication failed for user \"md5_user\" \
         (SQLSTATE 28P01)"
    );
    assert!(
        logins[4]["error"].as_str().unwrap().starts_with(&format!(
            "cannot reach 127.0.0.1:{down_port}: Connection refused"
        )),
        "{:#}",
        logins[4]
    );

    let about = |subject: &str| login_finding(&report, subject);
    assert_eq!(about("database app as md5_user")["severity"], "ok");
    let wrong = about("database app as wrong_password");
    assert_eq!(wrong["severity"], "problem");
    assert_says(
        wrong,
        "action",
        "check upstream_password in [users.wrong_password]",
    );
    let down = about("database down as md5_user");
    assert_says(
        down,
        "action",
        &format!("pg_isready -h 127.0.0.1 -p {down_port}"),
    );

    let listen_state: Vec<(&str, &str)> = report["listen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|port| {
            (
                port["address"].as_str().unwrap(),
                port["state"].as_str().unwrap(),
            )
        })
        .collect();
    let socket_path = dir.path().join(format!(".s.PGSQL.{listen_port}"));
    assert_eq!(
        listen_state,
        [
            (format!("127.0.0.1:{listen_port}").as_str(), "free"),
            (socket_path.to_str().unwrap(), "free"),
        ]
    );
}

#[test]
fn mysql_database_logins_are_tried_and_their_refusals_explained() {
    let maria = MariaDbServer::start();
    let config = mysql_proxy_config_with(
        &maria,
        "transaction",
        2,
        &format!(
            r#"
            [databases.wrong_password]
            protocol = "mysql"
            host = "127.0.0.1"
            port = {port}
            user = "{user}"
            password = "not-the-password"

            [databases.no_schema]
            protocol = "mysql"
            host = "127.0.0.1"
            port = {port}
            dbname = "no_such_schema"
            user = "{user}"
            password = "{password}"
            "#,
            port = maria.port(),
            user = NATIVE_USER.name,
            password = NATIVE_USER.password,
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = config
        .replace("{port}", &free_port().to_string())
        .replace("{mysql_port}", &free_port().to_string())
        .replace("{socket_dir}", &dir.path().display().to_string());
    let config_path = dir.path().join("churnstile.toml");
    std::fs::write(&config_path, config).unwrap();
    let pid = own_pid().to_string();

    let (code, report) = doctor_json(&["--config", config_path.to_str().unwrap(), "--pid", &pid]);
    assert_eq!(code, 2);
    let app_user = MYSQL_APP_USER.name;
    let logins: Vec<(&str, &str, &str, bool)> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|login| login["user"] == app_user)
        .map(|login| {
            (
                login["database"].as_str().unwrap(),
                login["protocol"].as_str().unwrap(),
                login["upstream_user"].as_str().unwrap(),
                login["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        logins,
        [
            ("app", "mysql", "native_user", true),
            ("no_schema", "mysql", "native_user", false),
            ("wrong_password", "mysql", "native_user", false),
        ]
    );

    let about =
        |database: &str| login_finding(&report, &format!("database {database} as {app_user}"));
    assert_eq!(about("app")["severity"], "ok");
    let wrong = about("wrong_password");
    assert_says(wrong, "summary", "(error 1045, SQLSTATE 28000)");
    assert_says(wrong, "action", "check the password for \"native_user\"");
    let no_schema = about("no_schema");
    assert_says(no_schema, "summary", "(error 1044, SQLSTATE 42000)");
    assert_says(
        no_schema,
        "action",
        "check dbname in [databases.no_schema]: the server has no database \"no_such_schema\"",
    );
}

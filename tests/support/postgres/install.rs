//! Preparing a PostgreSQL cluster for tests: finding the binaries, initdb,
//! postgresql.conf and pg_hba.conf, then the test roles and database.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{HOST, PgServer, PgServerBuilder};
use crate::support::credentials::{APP_DB, PG_SUPERUSER, PG_USERS};
use crate::support::os_account::{self, Account};

/// The directory holding `initdb`, `postgres`, `pg_isready` and `psql`:
/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
pub(super) fn bindir() -> &'static Path {
    static BINDIR: OnceLock<PathBuf> = OnceLock::new();
    BINDIR.get_or_init(|| {
        pg_config_bindir()
            .or_else(newest_debian_bindir)
            .unwrap_or_else(|| {
                panic!(
                    "no PostgreSQL server binaries: `pg_config --bindir` has no initdb and \
                     /usr/lib/postgresql/*/bin has none; tests/run.sh installs them"
                )
            })
    })
}

fn has_server_binaries(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    (output.status.success() && has_server_binaries(&dir)).then_some(dir)
}

fn newest_debian_bindir() -> Option<PathBuf> {
    fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let dir = entry.path().join("bin");
            has_server_binaries(&dir).then_some((major, dir))
        })
        .max()
        .map(|(_, dir)| dir)
}

/// PostgreSQL refuses to run as root, so as root the server runs as the
/// `postgres` account the Debian packages create.
pub(super) fn server_account() -> Option<Account> {
    if !os_account::running_as_root() {
        return None;
    }
    Some(os_account::lookup_account("postgres").unwrap_or_else(|| {
        panic!("tests run as root but there is no `postgres` account to run PostgreSQL as")
    }))
}

/// initdb, then the harness's postgresql.conf settings and pg_hba.conf.
pub(super) fn init_cluster(server: &PgServer, settings: &PgServerBuilder) {
    if let Some(account) = server.run_as {
        let owner = rustix::fs::Uid::from_raw(account.uid);
        let group = rustix::fs::Gid::from_raw(account.gid);
        rustix::fs::chown(server.dir.path(), Some(owner), Some(group))
            .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", server.dir.path().display()));
    }
    let initdb_log = server.dir.path().join("initdb.log");
    let mut initdb = server.server_command("initdb");
    initdb
        .arg("-D")
        .arg(server.data_dir())
        .args([
            "-N",
            "-A",
            "trust",
            "-U",
            PG_SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .arg("--no-instructions");
    crate::support::child::output_to(&mut initdb, &initdb_log);
    let status = initdb
        .status()
        .unwrap_or_else(|e| panic!("running {}/initdb: {e}", bindir().display()));
    if !status.success() {
        panic!(
            "initdb failed ({status}):\n{}",
            fs::read_to_string(&initdb_log).unwrap_or_default()
        );
    }
    let data = server.data_dir();
    // Appending and truncating keep the files' owner (the service account).
    let mut conf = crate::support::child::append(&data.join("postgresql.conf"));
    conf.write_all(postgresql_conf(server, settings).as_bytes())
        .expect("writing postgresql.conf");
    let mut hostssl_only = false;
    if let Some(tls) = &settings.tls {
        install_tls_files(server, tls);
        conf.write_all(b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
            .expect("writing postgresql.conf");
        hostssl_only = tls.hostssl_only;
    }
    fs::write(data.join("pg_hba.conf"), pg_hba_conf(hostssl_only)).expect("writing pg_hba.conf");
}

/// Copies the certificate and key into the data directory, owned by the
/// service account, the key readable by it alone (PostgreSQL insists).
fn install_tls_files(server: &PgServer, tls: &super::ServerTls) {
    use std::os::unix::fs::PermissionsExt;
    let data = server.data_dir();
    for (from, name, mode) in [
        (&tls.cert, "server.crt", 0o644),
        (&tls.key, "server.key", 0o600),
    ] {
        let to = data.join(name);
        fs::copy(from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        fs::set_permissions(&to, fs::Permissions::from_mode(mode)).expect("chmod");
        if let Some(account) = server.run_as {
            let owner = rustix::fs::Uid::from_raw(account.uid);
            let group = rustix::fs::Gid::from_raw(account.gid);
            rustix::fs::chown(&to, Some(owner), Some(group)).expect("chown to postgres");
        }
    }
}

fn postgresql_conf(server: &PgServer, settings: &PgServerBuilder) -> String {
    // PostgreSQL wants shared_buffers of at least 2 blocks per connection.
    let shared_buffers_kb = (32 * settings.max_connections).max(16 * 1024);
    let mut conf = format!(
        "\n# churnstile test harness\n\
         listen_addresses = '{HOST}'\n\
         unix_socket_directories = '{}'\n\
         max_connections = {}\n\
         shared_buffers = {shared_buffers_kb}kB\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         autovacuum = off\n\
         log_connections = on\n\
         log_line_prefix = '%m [%p] %q%u@%d '\n",
        server.socket_dir().display(),
        settings.max_connections,
    );
    for line in &settings.config_lines {
        writeln!(conf, "{line}").expect("writing to a String");
    }
    conf
}

/// One method per test role, over the Unix socket and 127.0.0.1 alike;
/// with `hostssl_only`, the test roles' TCP lines are `hostssl` (the
/// harness's own superuser keeps plaintext TCP for its queries).
fn pg_hba_conf(hostssl_only: bool) -> String {
    let host = if hostssl_only { "hostssl" } else { "host" };
    let mut hba = String::from("# TYPE  DATABASE  USER  ADDRESS  METHOD\n");
    writeln!(hba, "local all {PG_SUPERUSER} trust").expect("writing to a String");
    writeln!(hba, "host all {PG_SUPERUSER} {HOST}/32 trust").expect("writing to a String");
    for user in PG_USERS {
        let (role, method) = (user.name, user.method);
        writeln!(hba, "local all {role} {method}").expect("writing to a String");
        writeln!(hba, "{host} all {role} {HOST}/32 {method}").expect("writing to a String");
    }
    // Roles a test creates itself: md5 also accepts SCRAM-stored passwords.
    hba.push_str("local all all md5\n");
    writeln!(hba, "{host} all all {HOST}/32 md5").expect("writing to a String");
    hba
}

/// Creates the `PG_USERS` roles, each password stored the way its method
/// needs, and the `app` database where every role may do anything.
pub(super) fn create_accounts(server: &PgServer) {
    let mut sql = String::new();
    for user in PG_USERS {
        let stored_as = if user.method == "md5" {
            "md5"
        } else {
            "scram-sha-256"
        };
        let password = if user.password.is_empty() {
            String::new()
        } else {
            format!(" PASSWORD '{}'", user.password)
        };
        writeln!(
            sql,
            "SET password_encryption = '{stored_as}';\nCREATE ROLE {} LOGIN{password};",
            user.name
        )
        .expect("writing to a String");
    }
    let roles = std::iter::once(PG_SUPERUSER)
        .chain(PG_USERS.iter().map(|user| user.name))
        .collect::<Vec<_>>()
        .join(", ");
    write!(
        sql,
        "CREATE DATABASE {APP_DB} OWNER {PG_SUPERUSER};\n\
         GRANT ALL ON DATABASE {APP_DB} TO PUBLIC;\n\
         \\connect {APP_DB}\n\
         GRANT ALL ON SCHEMA public TO PUBLIC;\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {roles} GRANT ALL ON TABLES TO PUBLIC;\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {roles} GRANT ALL ON SEQUENCES TO PUBLIC;\n"
    )
    .expect("writing to a String");
    psql(server, &sql);
}

/// Runs a script as the superuser; panics with psql's output on any error.
fn psql(server: &PgServer, script: &str) {
    let mut psql = Command::new(bindir().join("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            HOST,
            "-U",
            PG_SUPERUSER,
        ])
        .args(["-d", "postgres", "-f", "-", "-p"])
        .arg(server.port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}/psql: {e}", bindir().display()));
    psql.stdin
        .take()
        .expect("psql stdin is piped")
        .write_all(script.as_bytes())
        .expect("writing the script to psql");
    let output = psql.wait_with_output().expect("waiting for psql");
    if !output.status.success() {
        panic!(
            "psql failed ({}) running:\n{script}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

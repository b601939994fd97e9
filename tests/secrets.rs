//! Passwords kept secret: zero-config mode takes them from PGPASSWORD, from
//! CHURNSTILE_UPSTREAM or from --upstream-file, so `ps` shows none; a
//! configuration file reads them from `password_file` or `${VAR}`; and no
//! password appears in the logs, SHOW output, `doctor` output or metrics.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use support::admin_console::rows;
use support::metrics_endpoint::scrape;
use support::pg_client::scalar;
use support::{APP_DB, MD5_USER, PLAIN_USER, PgServer, Proxy, SCRAM_USER, free_port};

const BINARY: &str = env!("CARGO_BIN_EXE_churnstile");
const PLAIN_PASSWORD_VAR: &str = "CHURNSTILE_TEST_PLAIN_PASSWORD";

/// Environment variables for churnstile, as (name, value).
type Env<'a> = &'a [(&'a str, &'a str)];

/// churnstile's command line, as `ps` shows it.
fn command_line(proxy: &Proxy) -> String {
    let raw = std::fs::read(format!("/proc/{}/cmdline", proxy.pid())).unwrap();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_takes_the_password_from_the_environment_or_a_file() {
    let pg = PgServer::start();
    let without_password = format!(
        "postgres://{}@127.0.0.1:{}/{APP_DB}",
        MD5_USER.name,
        pg.port()
    );
    let dir = tempfile::tempdir().unwrap();
    let upstream_file = dir.path().join("upstream");
    std::fs::write(&upstream_file, format!("# the app\n{}\n", pg.url(MD5_USER))).unwrap();
    let upstream_file = upstream_file.to_str().unwrap();
    let url = pg.url(MD5_USER);
    let ways: [(&[&str], Env); 3] = [
        (
            &["--upstream", &without_password],
            &[("PGPASSWORD", MD5_USER.password)],
        ),
        (&[], &[("CHURNSTILE_UPSTREAM", &url)]),
        (&["--upstream-file", upstream_file], &[]),
    ];
    for (args, env) in ways {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all_args = vec!["--listen", &listen];
        all_args.extend_from_slice(args);
        let proxy = Proxy::start_args_with_env(&all_args, port, env);

        let client = proxy.connect_as(MD5_USER).await;
        assert_eq!(
            scalar(&client, "SELECT 'in'").await,
            "in",
            "{args:?} {env:?}"
        );
        let wrong = proxy.try_connect(MD5_USER.name, "wrong", APP_DB).await;
        assert!(
            wrong.is_err(),
            "{args:?} {env:?}: clients must present the password"
        );
        let seen = command_line(&proxy);
        assert!(!seen.contains(MD5_USER.password), "{seen}");
    }
}

/// A config whose passwords come from a file, a variable and the file
/// itself, with the metrics endpoint on `metrics` and `plain_user` an
/// admin; written to `dir`, returned with its path.
fn secret_config(dir: &std::path::Path, pg: &PgServer, metrics: SocketAddr) -> String {
    let md5_file = dir.join("md5_user.password");
    std::fs::write(&md5_file, format!("{}\n", MD5_USER.password)).unwrap();
    format!(
        "[listen]\n\
         postgres = [\"127.0.0.1:{{port}}\"]\n\
         unix_socket_dir = \"{{socket_dir}}\"\n\
         [general]\n\
         auth_type = \"md5\"\n\
         admin_users = [\"{plain}\"]\n\
         metrics_listen = \"{metrics}\"\n\
         [databases.{APP_DB}]\n\
         host = \"127.0.0.1\"\n\
         port = {pg_port}\n\
         [users.{md5}]\n\
         password_file = \"{md5_file}\"\n\
         [users.{plain}]\n\
         password = \"${{{PLAIN_PASSWORD_VAR}}}\"\n\
         [users.{scram}]\n\
         password = \"{scram_password}\"\n",
        plain = PLAIN_USER.name,
        md5 = MD5_USER.name,
        scram = SCRAM_USER.name,
        scram_password = SCRAM_USER.password,
        pg_port = pg.port(),
        md5_file = md5_file.display(),
    )
}

/// `churnstile doctor ARGS` with the password variable set: stdout and
/// stderr together.
fn doctor(args: &[&str]) -> String {
    let output = Command::new(BINARY)
        .arg("doctor")
        .args(args)
        .env(PLAIN_PASSWORD_VAR, PLAIN_USER.password)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains(APP_DB), "the doctor looked at app:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_appear_in_no_log_show_output_doctor_report_or_metric() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let config = secret_config(dir.path(), &pg, metrics);
    let env = [(PLAIN_PASSWORD_VAR, PLAIN_USER.password)];
    let proxy = Proxy::start_with_env(&config, &env);

    for user in [MD5_USER, SCRAM_USER] {
        let client = proxy.connect_as(user).await;
        assert_eq!(scalar(&client, "SELECT 1").await, "1");
    }
    assert!(
        proxy
            .try_connect(MD5_USER.name, "wrong", APP_DB)
            .await
            .is_err()
    );
    let console = proxy
        .connect(PLAIN_USER.name, PLAIN_USER.password, "churnstile")
        .await;
    let mut outputs = vec![("metrics".to_owned(), scrape(metrics).await)];
    for command in [
        "CONFIG",
        "DATABASES",
        "POOLS",
        "CLIENTS",
        "SERVERS",
        "STATS",
        "CHURN",
    ] {
        let shown = format!("{:?}", rows(&console, &format!("SHOW {command}")).await);
        outputs.push((format!("SHOW {command}"), shown));
    }
    let config_file = proxy.socket_dir().parent().unwrap().join("churnstile.toml");
    let config_file = config_file.to_str().unwrap();
    outputs.push(("doctor".to_owned(), doctor(&["--config", config_file])));
    outputs.push((
        "doctor --json".to_owned(),
        doctor(&["--config", config_file, "--json"]),
    ));
    outputs.push((
        "churnstile's log".to_owned(),
        proxy.stderr() + &proxy.stdout(),
    ));

    for (what, text) in &outputs {
        for password in [MD5_USER.password, PLAIN_USER.password, SCRAM_USER.password] {
            assert!(
                !text.contains(password),
                "{what} shows {password:?}:\n{text}"
            );
        }
    }
    assert!(
        !command_line(&proxy).contains(PLAIN_USER.password),
        "the variable's value is not on the command line"
    );
}

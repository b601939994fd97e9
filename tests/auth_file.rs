//! PgBouncer's `auth_file`: users of a `userlist.txt` log in through
//! churnstile with each kind of secret it holds (plaintext, md5, SCRAM
//! verifier, copied from the server's own pg_authid), a wrong password is
//! refused, and RELOAD re-reads the file.

mod support;

use support::pg_client::{connect, connection_string, scalar, sqlstate};
use support::{APP_DB, MD5_USER, PG_SUPERUSER, PLAIN_USER, PgServer, Proxy, SCRAM_USER, free_port};

/// The secret PostgreSQL stores for `role`: `md5…` or `SCRAM-SHA-256$…`.
async fn stored_secret(pg: &PgServer, role: &str) -> String {
    let direct = connection_string(pg.host(), pg.port(), PG_SUPERUSER, "", APP_DB);
    let client = connect(&direct).await.unwrap();
    let sql = format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'");
    scalar(&client, &sql).await
}

/// A userlist line with PgBouncer's quoting.
fn line(user: &str, secret: &str) -> String {
    format!(
        "\"{}\" \"{}\"\n",
        user.replace('"', "\"\""),
        secret.replace('"', "\"\"")
    )
}

/// Listens on `port`; every client logs in upstream as the trusted superuser,
/// so the secrets in the userlist only check clients.
fn config(pg: &PgServer, port: u16, userlist: &std::path::Path) -> String {
    format!(
        "[listen]\npostgres = [\"127.0.0.1:{port}\"]\nunix_socket_dir = \"\"\n\
         [general]\nauth_file = \"{}\"\nadmin_users = [\"{}\"]\n\
         [databases.{APP_DB}]\nhost = \"{}\"\nport = {}\nuser = \"{PG_SUPERUSER}\"\n",
        userlist.display(),
        PLAIN_USER.name,
        pg.host(),
        pg.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userlist_users_log_in_with_each_secret_kind_and_reload_rereads_it() {
    let pg = PgServer::start();
    let md5 = stored_secret(&pg, MD5_USER.name).await;
    let scram = stored_secret(&pg, SCRAM_USER.name).await;
    assert!(md5.starts_with("md5") && scram.starts_with("SCRAM-SHA-256$"));
    let dir = tempfile::tempdir().unwrap();
    let userlist = dir.path().join("userlist.txt");
    let text = format!(
        ";; users\n{}{}{}",
        line(MD5_USER.name, &md5),
        line(SCRAM_USER.name, &scram),
        line(PLAIN_USER.name, PLAIN_USER.password)
    );
    std::fs::write(&userlist, &text).unwrap();
    let path = dir.path().join("churnstile.toml");
    let port = free_port();
    std::fs::write(&path, config(&pg, port, &userlist)).unwrap();
    let proxy = Proxy::start_args(&["--config", path.to_str().unwrap()], port);

    for user in [MD5_USER, SCRAM_USER, PLAIN_USER] {
        let client = proxy.connect(user.name, user.password, APP_DB).await;
        assert_eq!(scalar(&client, "SELECT 6 * 7").await, "42", "{}", user.name);
    }
    let error = proxy
        .try_connect(MD5_USER.name, "wrong", APP_DB)
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&error), "28P01");

    let changed = "changed pass";
    let text = text.replace(&line(MD5_USER.name, &md5), &line(MD5_USER.name, changed));
    std::fs::write(&userlist, text + &line("new\"comer", "fresh")).unwrap();
    let console = proxy
        .connect(PLAIN_USER.name, PLAIN_USER.password, "churnstile")
        .await;
    console.simple_query("RELOAD").await.unwrap();
    let client = proxy.connect(MD5_USER.name, changed, APP_DB).await;
    assert_eq!(scalar(&client, "SELECT 1").await, "1");
    let error = proxy
        .try_connect(MD5_USER.name, MD5_USER.password, APP_DB)
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&error), "28P01");
    // Adding a user applies at once, as for [users]: nothing is left for a restart.
    let stderr = proxy.stderr();
    assert!(
        stderr.contains("configuration reloaded") && stderr.contains("not_applied=[]"),
        "{stderr}"
    );
}

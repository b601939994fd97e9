//! RELOAD that really reloads: databases and users added and removed while
//! clients run. Added ones serve new logins at once; a pool whose database
//! is unchanged keeps its server connections; a removed database's client
//! finishes its transaction and is then told the database is gone.

mod support;

use std::path::Path;

use support::admin_console::{ADMIN_CONFIG, admin, rows};
use support::pg_client::{backend_pid, scalar, sqlstate};
use support::{APP_DB, MD5_USER, PgServer, Proxy, free_port, pg_proxy_config};

const INVALID_CATALOG_NAME: &str = "3D000";

/// A second name for the server's `app` database, added and removed by the
/// reloads, and a user that exists only while configured.
const SECOND_DB: &str = "second";
const NEW_USER: &str = "newbie";
const NEW_PASSWORD: &str = "newbie_pass";

fn extra_with_second_database_and_user(pg: &PgServer) -> String {
    format!(
        "[databases.{SECOND_DB}]\nhost = \"{host}\"\nport = {port}\ndbname = \"{APP_DB}\"\n\
         [users.{NEW_USER}]\npassword = \"{NEW_PASSWORD}\"\n\
         upstream_user = \"{user}\"\nupstream_password = \"{password}\"\n",
        host = pg.host(),
        port = pg.port(),
        user = MD5_USER.name,
        password = MD5_USER.password,
    )
}

fn write_config(pg: &PgServer, path: &Path, port: u16, extra: &str) {
    let config = pg_proxy_config(
        pg,
        &format!("{ADMIN_CONFIG}[pool]\npool_mode = \"transaction\"\n{extra}"),
    )
    .replace("{port}", &port.to_string())
    .replace("{socket_dir}", "");
    std::fs::write(path, config).unwrap();
}

#[tokio::test]
async fn reload_adds_and_removes_databases_and_users_while_clients_run() {
    let pg = PgServer::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("churnstile.toml");
    write_config(&pg, &path, port, "");
    let proxy = Proxy::start_args(&["--config", path.to_str().unwrap()], port);
    let console = admin(&proxy).await;

    let steady = proxy
        .connect(MD5_USER.name, MD5_USER.password, APP_DB)
        .await;
    let pid_before = backend_pid(&steady).await;
    let refused = proxy
        .try_connect(MD5_USER.name, MD5_USER.password, SECOND_DB)
        .await
        .expect_err("the second database is not configured yet");
    assert_eq!(sqlstate(&refused), INVALID_CATALOG_NAME);

    write_config(&pg, &path, port, &extra_with_second_database_and_user(&pg));
    console.simple_query("RELOAD").await.unwrap();

    assert_eq!(
        backend_pid(&steady).await,
        pid_before,
        "an unchanged database keeps its pool and the client its server connection"
    );
    let second = proxy
        .connect(MD5_USER.name, MD5_USER.password, SECOND_DB)
        .await;
    assert_eq!(scalar(&second, "SELECT 1").await, "1");
    let newbie = proxy.connect(NEW_USER, NEW_PASSWORD, APP_DB).await;
    assert_eq!(scalar(&newbie, "SELECT current_user").await, MD5_USER.name);
    let databases: Vec<String> = rows(&console, "SHOW DATABASES")
        .await
        .into_iter()
        .map(|row| row["name"].clone())
        .collect();
    assert_eq!(databases, [APP_DB, SECOND_DB]);

    second.simple_query("BEGIN").await.unwrap();
    assert_eq!(scalar(&second, "SELECT 2").await, "2");
    write_config(&pg, &path, port, "");
    console.simple_query("RELOAD").await.unwrap();

    assert_eq!(
        scalar(&second, "SELECT 3").await,
        "3",
        "a removed database's client finishes its transaction"
    );
    second.simple_query("COMMIT").await.unwrap();
    let gone = second
        .simple_query("SELECT 4")
        .await
        .expect_err("after its transaction the removed database serves no more");
    assert_eq!(sqlstate(&gone), INVALID_CATALOG_NAME);
    let message = gone.as_db_error().unwrap().message();
    assert!(message.contains(SECOND_DB), "{message}");

    let refused = proxy
        .try_connect(MD5_USER.name, MD5_USER.password, SECOND_DB)
        .await
        .expect_err("the removed database refuses new logins");
    assert_eq!(sqlstate(&refused), INVALID_CATALOG_NAME);
    proxy
        .try_connect(NEW_USER, NEW_PASSWORD, APP_DB)
        .await
        .expect_err("the removed user cannot log in");
    assert_eq!(scalar(&steady, "SELECT 5").await, "5");
    assert_eq!(backend_pid(&steady).await, pid_before);
}

//! The admin console as tests read it: a console client for `plain_user`
//! (an admin with [`ADMIN_CONFIG`]), SHOW rows as column name → text value,
//! and the SHOW POOLS row of the application's pool.

use std::collections::HashMap;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::{APP_DB, MD5_USER, PLAIN_USER, Proxy};

/// The console's database name.
pub const ADMIN_DB: &str = "churnstile";

/// `plain_user` may use the console; `md5_user` is an application user.
pub const ADMIN_CONFIG: &str = "[general]\nadmin_users = [\"plain_user\"]\n";

/// A console session as `plain_user`.
pub async fn admin(proxy: &Proxy) -> Client {
    proxy
        .connect(PLAIN_USER.name, PLAIN_USER.password, ADMIN_DB)
        .await
}

/// Rows of `sql` as column name → text value.
pub async fn rows(client: &Client, sql: &str) -> Vec<HashMap<String, String>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, column)| {
                        (
                            column.name().to_owned(),
                            row.get(i).unwrap_or("NULL").to_owned(),
                        )
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The SHOW POOLS row of app/md5_user.
pub async fn app_pool(admin: &Client) -> HashMap<String, String> {
    rows(admin, "SHOW POOLS")
        .await
        .into_iter()
        .find(|row| row["database"] == APP_DB && row["user"] == MD5_USER.name)
        .expect("SHOW POOLS lists app/md5_user")
}

/// `columns` of app/md5_user's SHOW POOLS row.
pub async fn pool_counts(admin: &Client, columns: &[&str]) -> Vec<String> {
    let row = app_pool(admin).await;
    columns.iter().map(|column| row[*column].clone()).collect()
}

pub fn owned(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

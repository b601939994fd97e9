//! The zero-config flags as configurations: one database per upstream,
//! passwords from the URL or the environment, listeners by protocol.

use super::*;

fn listen() -> SocketAddr {
    "127.0.0.1:6432".parse().unwrap()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn config(upstream: &str) -> Result<Config, SidecarError> {
    sidecar_config(&Sidecar::new(listen(), upstream), &no_env)
}

#[test]
fn with_password_the_user_must_present_it() {
    let config = config("postgres://alice:secret@db:6543/app").unwrap();
    assert_eq!(config.listen.postgres, [listen()]);
    assert_eq!(config.listen.unix_socket_dir, None);
    assert_eq!(config.general.auth_type, AuthType::Md5);
    assert_eq!(config.pool, PoolSettings::default());
    assert_eq!(
        config.databases,
        BTreeMap::from([(
            "app".to_owned(),
            DatabaseConfig {
                protocol: Protocol::Postgres,
                host: "db".to_owned(),
                port: 6543,
                dbname: "app".to_owned(),
                user: None,
                password: None,
                pool: PoolSettings::default(),
            }
        )])
    );
    assert_eq!(
        config.users,
        BTreeMap::from([(
            "alice".to_owned(),
            UserConfig {
                secret: Some(ClientSecret::Plain("secret".to_owned())),
                upstream_user: "alice".to_owned(),
                upstream_password: Some("secret".to_owned()),
            }
        )])
    );
}

#[test]
fn without_password_clients_are_trusted() {
    for upstream in ["postgres://alice@db/app", "postgres://alice:@db/app"] {
        let config = config(upstream).unwrap();
        assert_eq!(config.general.auth_type, AuthType::Trust);
        let user = &config.users["alice"];
        assert_eq!(user.secret, None);
        assert_eq!(user.upstream_password, None);
    }
}

#[test]
fn a_missing_password_comes_from_pgpassword_or_mysql_pwd() {
    let env = |name: &str| match name {
        "PGPASSWORD" => Some("pg-secret".to_owned()),
        "MYSQL_PWD" => Some("my-secret".to_owned()),
        _ => None,
    };
    let mut flags = Sidecar::new(listen(), "postgres://alice@db/app");
    flags.upstreams.push("mysql://bob@db/shop".to_owned());
    flags.mysql_listen = Some("127.0.0.1:3307".parse().unwrap());
    let config = sidecar_config(&flags, &env).unwrap();
    assert_eq!(config.general.auth_type, AuthType::Md5);
    assert_eq!(
        config.users["alice"].upstream_password.as_deref(),
        Some("pg-secret")
    );
    assert_eq!(
        config.users["bob"].upstream_password.as_deref(),
        Some("my-secret")
    );
    let in_url = sidecar_config(&Sidecar::new(listen(), "postgres://alice:url@db/app"), &env);
    assert_eq!(
        in_url.unwrap().users["alice"].upstream_password.as_deref(),
        Some("url")
    );
}

#[test]
fn several_upstreams_are_one_database_each_with_their_listeners() {
    let dir = PathBuf::from("/run/churnstile");
    let flags = Sidecar {
        upstreams: vec![
            "postgres://app:pw@pg/orders".to_owned(),
            "postgres://app:pw@pg/billing".to_owned(),
            "mysql://shop:pw2@my/shop".to_owned(),
        ],
        mysql_listen: Some("127.0.0.1:3310".parse().unwrap()),
        unix_socket_dir: Some(dir.clone()),
        max_client_conn: Some(500),
        admin_user: Some("app".to_owned()),
        ..Sidecar::new(listen(), "")
    };
    let config = sidecar_config(&flags, &no_env).unwrap();
    let names: Vec<&String> = config.databases.keys().collect();
    assert_eq!(names, ["billing", "orders", "shop"]);
    assert_eq!(config.databases["shop"].protocol, Protocol::Mysql);
    assert_eq!(config.users.len(), 2);
    assert_eq!(config.general.max_client_conn, 500);
    assert_eq!(config.general.observe.admin_users, ["app"]);
    assert_eq!(config.listen.postgres, [listen()]);
    assert_eq!(config.listen.mysql, ["127.0.0.1:3310".parse().unwrap()]);
    assert_eq!(config.postgres_socket_dir(), Some(dir.as_path()));
    assert_eq!(
        config.listen.mysql_unix_socket,
        Some(dir.join("churnstile-mysql-3310.sock"))
    );
}

#[test]
fn a_mysql_upstream_alone_is_served_on_listen() {
    let config = config("mysql://root@127.0.0.1/shop").unwrap();
    assert_eq!(config.listen.mysql, [listen()]);
    assert!(config.listen.postgres.is_empty());
    assert_eq!(config.listen.mysql_unix_socket, None);
    assert_eq!(config.databases["shop"].protocol, Protocol::Mysql);
}

#[test]
fn contradictory_flags_are_refused_without_echoing_passwords() {
    let with = |more: &[&str], change: &dyn Fn(&mut Sidecar)| {
        let mut flags = Sidecar::new(listen(), "postgres://u:hunter2@h/d");
        flags
            .upstreams
            .extend(more.iter().map(|url| (*url).to_owned()));
        change(&mut flags);
        sidecar_config(&flags, &no_env).unwrap_err()
    };
    let cases = [
        (
            with(&["postgres://v:x@h/d"], &|_| {}),
            SidecarError::DuplicateDatabase("d".into()),
        ),
        (
            with(&["postgres://u:other@h/e"], &|_| {}),
            SidecarError::ConflictingPasswords("u".into()),
        ),
        (
            with(&["postgres://v@h/e"], &|_| {}),
            SidecarError::MixedPasswords,
        ),
        (
            with(&["mysql://u:hunter2@h/e"], &|_| {}),
            SidecarError::MysqlListenNeeded,
        ),
        (
            with(&[], &|f| f.mysql_listen = Some(listen())),
            SidecarError::MysqlListenUnused,
        ),
        (
            with(&[], &|f| f.admin_user = Some("root".into())),
            SidecarError::UnknownAdminUser("root".into()),
        ),
        (
            with(&[], &|f| f.pool_size = Some(0)),
            SidecarError::ZeroPoolSize,
        ),
        (
            with(&[], &|f| f.max_client_conn = Some(0)),
            SidecarError::ZeroMaxClientConn,
        ),
    ];
    for (error, expected) in cases {
        assert_eq!(error, expected);
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}

#[test]
fn pool_mode_and_size_apply_to_the_database() {
    let flags = Sidecar {
        pool_mode: Some(PoolMode::Transaction),
        pool_size: Some(7),
        ..Sidecar::new(listen(), "postgres://u:p@h/d")
    };
    let config = sidecar_config(&flags, &no_env).unwrap();
    for pool in [&config.pool, &config.databases["d"].pool] {
        assert_eq!(pool.pool_mode, PoolMode::Transaction);
        assert_eq!(pool.default_pool_size, 7);
    }
}

//! The accounts every throwaway server is created with, one per
//! authentication method, so tests name them instead of spelling passwords.

/// Database every throwaway server creates for tests (on both PostgreSQL and
/// MariaDB), with full rights for every test account.
pub const APP_DB: &str = "app";

/// PostgreSQL's bootstrap superuser; logs in without a password (trust).
pub const PG_SUPERUSER: &str = "postgres";

/// A PostgreSQL login role and how the server authenticates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgUser {
    pub name: &'static str,
    /// Empty for `trust`, which asks for none.
    pub password: &'static str,
    /// The pg_hba.conf method for this role, local and 127.0.0.1/32 alike.
    pub method: &'static str,
}

pub const TRUST_USER: PgUser = PgUser {
    name: "trust_user",
    password: "",
    method: "trust",
};

/// Password stored as an MD5 hash, so the server sends an MD5 challenge.
pub const MD5_USER: PgUser = PgUser {
    name: "md5_user",
    password: "md5_pass",
    method: "md5",
};

/// Password stored as a SCRAM-SHA-256 verifier.
pub const SCRAM_USER: PgUser = PgUser {
    name: "scram_user",
    password: "scram_pass",
    method: "scram-sha-256",
};

/// Authenticated with `password`: the client sends it in cleartext.
pub const PLAIN_USER: PgUser = PgUser {
    name: "plain_user",
    password: "plain_pass",
    method: "password",
};

pub const PG_USERS: [PgUser; 4] = [TRUST_USER, MD5_USER, SCRAM_USER, PLAIN_USER];

/// A MariaDB account, host `%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariaDbUser {
    pub name: &'static str,
    pub password: &'static str,
}

/// Authenticated with `mysql_native_password`; all privileges on `app`.
pub const NATIVE_USER: MariaDbUser = MariaDbUser {
    name: "native_user",
    password: "native_pass",
};

/// A user of churnstile's MySQL test config (`mysql_proxy_config`), not a
/// MariaDB account: churnstile checks its password and logs in upstream as
/// `NATIVE_USER`, the database's forced user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MySqlProxyUser {
    pub name: &'static str,
    pub password: &'static str,
}

/// The user MySQL tests log in through churnstile as.
pub const MYSQL_APP_USER: MySqlProxyUser = MySqlProxyUser {
    name: "appuser",
    password: "secret",
};

/// A second user, for what must not cross users (KILL, COM_CHANGE_USER).
pub const MYSQL_OTHER_USER: MySqlProxyUser = MySqlProxyUser {
    name: "otheruser",
    password: "other_secret",
};

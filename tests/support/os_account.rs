//! Who servers run as: the test's own user, or a service account when the
//! tests run as root (PostgreSQL refuses to run as root).

use std::fs;

/// A Unix account's numeric ids, as listed in /etc/passwd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

pub fn running_as_root() -> bool {
    rustix::process::getuid().is_root()
}

/// Looks `name` up in /etc/passwd; `None` when there is no such account.
pub fn lookup_account(name: &str) -> Option<Account> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(Account { uid, gid })
    })
}

//! The MySQL/MariaDB side of the proxy, shaped like `postgres/`: the
//! sans-IO wire codec and authentication crypto, upstream connections and
//! their login, the client login, the per-client session state machine,
//! response relaying with capability translation, session-state tracking,
//! prepared statements, pins and KILL.

pub mod auth;
pub mod backend;
mod client;
pub mod connector;
pub mod io;
pub mod kill;
pub mod login;
pub mod prepared;
pub mod relay;
pub mod service;
mod session;
pub mod sql;
pub mod state;
pub mod wire;

pub(crate) use client::serve;

//! The MySQL/MariaDB side of the proxy, shaped like `postgres/`: the
//! sans-IO wire codec (`wire/`) and the packet stream that does its I/O,
//! authentication crypto (`auth/`), upstream connections and their login
//! (`backend`, `connector`), one client from accept to close (`client`:
//! its `login`, then its `session` state machine), response relaying with
//! capability translation (`relay`), session-state tracking (`state`),
//! prepared statements, pins (`sql`) and KILL (`kill`, MySQL's word for
//! what PostgreSQL calls cancel).

pub mod auth;
pub mod backend;
mod client;
pub(crate) mod connector;
mod kill;
mod login;
mod packet_stream;
mod prepared;
mod relay;
pub mod service;
mod session;
mod sql;
mod state;
pub mod wire;

pub(crate) use client::{refuse_too_many, serve};

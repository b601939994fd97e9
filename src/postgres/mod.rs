//! The PostgreSQL side of the proxy, shaped like `mysql/`: the sans-IO
//! wire codec (`wire/`) and authentication crypto (`auth/`), the startup
//! phase and client login, the per-client session state machine and the
//! relay between its two sides, session-state tracking and replay
//! (`state/`), prepared statements, upstream connections and their pool
//! connector, and cancel routing. The core hands each accepted connection
//! to [`serve`].

pub(crate) mod auth;
pub mod backend;
mod cancel;
mod client;
mod connector;
mod encryption;
mod login;
mod prepared;
mod probe;
mod relay;
mod release;
pub(crate) mod service;
mod session;
mod sides;
pub mod sql;
mod startup;
mod state;
mod traffic;
mod upstream_error;
pub mod wire;

pub use client::{ConsoleLogin, refuse_too_many, serve};

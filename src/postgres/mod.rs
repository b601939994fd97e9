//! The PostgreSQL side of the proxy, shaped like `mysql/`: the sans-IO
//! wire codec (`wire/`) and authentication crypto (`auth/`), the startup
//! phase and client login, the per-client session state machine and the
//! relay between its two sides, session-state tracking and replay
//! (`state/`), prepared statements, upstream connections and their pool
//! connector, and cancel routing.

pub mod auth;
pub mod backend;
pub mod cancel;
pub mod connector;
mod lazy_release;
pub mod login;
pub mod pin_counters;
pub mod prepared;
mod probe;
pub mod relay;
pub mod release;
pub mod service;
pub mod session;
mod sides;
pub mod sql;
pub mod startup;
pub mod state;
pub mod traffic;
pub mod wire;

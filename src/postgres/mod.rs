//! PostgreSQL protocol support: framing, client authentication, the
//! client-facing session, upstream connections and their pool connector,
//! and cancel routing.

pub mod auth;
pub mod backend;
pub mod cancel;
pub mod codec;
pub mod connector;
pub mod login;
pub mod messages;
pub mod params;
pub mod release;
pub mod service;
pub mod session;
pub mod sql;
pub mod startup;

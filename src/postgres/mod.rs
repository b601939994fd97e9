//! PostgreSQL protocol support: framing, client authentication, the
//! client-facing session, upstream connections and their pool connector,
//! and cancel routing.

pub mod auth;
pub mod backend;
pub mod cancel;
pub mod connector;
pub mod login;
pub mod params;
pub mod pin_counters;
pub mod pipeline;
pub mod prepared;
pub mod relay;
pub mod release;
pub mod reported;
pub mod service;
pub mod session;
pub mod settings;
mod sides;
pub mod sql;
pub mod startup;
pub mod traffic;
pub mod wire;

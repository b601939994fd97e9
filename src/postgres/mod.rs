//! PostgreSQL protocol support: framing, the client-facing session, upstream
//! connections and their pool connector, and cancel routing.

pub mod backend;
pub mod cancel;
pub mod codec;
pub mod connector;
pub mod messages;
pub mod params;
pub mod release;

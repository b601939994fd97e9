//! PostgreSQL protocol support: framing, the client-facing session, upstream
//! connections and their pool connector, and cancel routing.

pub mod codec;
pub mod messages;

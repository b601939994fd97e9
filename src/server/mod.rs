//! The server side: opening listeners (TCP and Unix), descriptor limits,
//! accepting clients within `max_client_conn`, and running until a graceful
//! shutdown.

pub mod accept;
pub mod bind;
pub mod frontend;
pub mod limits;
pub mod run;

//! The server side: opening listeners (TCP and Unix), accepting clients
//! within `max_client_conn`, and running until a graceful shutdown.

pub mod accept;
pub mod bind;
pub mod run;

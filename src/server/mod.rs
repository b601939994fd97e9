//! The server side: opening listeners (TCP and Unix), descriptor limits,
//! accepting clients within `max_client_conn` and handing them to the core
//! (or to the admin console once they log in to it), and running until a
//! graceful shutdown,
//! answering the signals an operator sends and telling systemd how it goes.

pub mod accept;
pub mod bind;
pub mod limits;
mod notify;
pub mod run;
mod signals;

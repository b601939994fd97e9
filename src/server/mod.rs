//! The server side: opening listeners (TCP and Unix) and, later, accepting
//! clients, limits, signals and shutdown.

pub mod bind;

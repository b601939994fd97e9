//! Who is connected right now: every logged-in client and every open server
//! connection, with what the admin console shows about them. Entries change
//! at login, attach, release and exit, never per message.

mod clients;
mod endpoints;
mod servers;

pub use clients::{ClientEntry, ClientRegistry, ClientState, LiveClient};
pub use endpoints::Endpoint;
pub use servers::{ServerEntry, ServerRegistry};

//! Configuration: the validated types churnstile runs with, loading them from
//! a TOML file with line and column errors, and building them from a single
//! upstream URL for zero-config sidecar use.

mod secret;
mod types;

pub use secret::parse_client_secret;
pub use types::*;

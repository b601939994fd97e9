//! Configuration: the validated types churnstile runs with, loading them from
//! a TOML file with line and column errors, and building them from a single
//! upstream URL for zero-config sidecar use.

mod error;
mod load;
mod observe;
mod pool;
mod secret;
mod section;
mod types;
mod url;
mod userlist;

pub use error::{ConfigError, ConfigErrors};
pub use load::{load_file, parse_str};
pub use types::*;
pub use url::{UrlError, sidecar_config};

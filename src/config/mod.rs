//! Configuration: the validated types churnstile runs with, loading them from
//! a TOML file with line and column errors, and building them from a single
//! upstream URL for zero-config sidecar use; passwords may come from the
//! environment or from files.

mod error;
mod load;
mod observe;
mod password;
mod pool;
mod secret;
mod section;
mod sidecar;
mod tcp;
mod tls;
mod types;
mod url;
mod userlist;

pub use error::{ConfigError, ConfigErrors};
pub use load::{load_file, parse_str};
pub use sidecar::{Sidecar, SidecarError, sidecar_config};
pub use tcp::TcpSettings;
pub use types::*;
pub use url::UrlError;

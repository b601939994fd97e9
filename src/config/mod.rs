//! Configuration: the validated types churnstile runs with.

mod types;

pub use types::*;

//! The MySQL/MariaDB side of the proxy: wire codec.

pub mod wire;

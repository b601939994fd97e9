//! Fuzzes `churnstile::fuzzing::config_toml`: arbitrary bytes must be refused or
//! accepted, never panic, hang or allocate without bound.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| churnstile::fuzzing::config_toml(data));

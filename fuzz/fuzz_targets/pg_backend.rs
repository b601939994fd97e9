//! Fuzzes `churnstile::fuzzing::pg_backend`: arbitrary bytes must be refused or
//! accepted, never panic, hang or allocate without bound.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| churnstile::fuzzing::pg_backend(data));

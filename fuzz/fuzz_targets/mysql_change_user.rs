//! Fuzzes `churnstile::fuzzing::mysql_change_user`: arbitrary bytes must be refused or
//! accepted, never panic, hang or allocate without bound.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| churnstile::fuzzing::mysql_change_user(data));

//! Fuzzes `churnstile::fuzzing::mysql_handshake_response`: arbitrary bytes must be refused or
//! accepted, never panic, hang or allocate without bound.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| churnstile::fuzzing::mysql_handshake_response(data));

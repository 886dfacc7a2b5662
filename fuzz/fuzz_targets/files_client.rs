#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harmony_files::fuzzing::client_session(data));

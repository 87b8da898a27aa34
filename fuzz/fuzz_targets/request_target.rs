#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wren::fuzz::request_target(data));

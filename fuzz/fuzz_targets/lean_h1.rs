#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aragora_fuzzing::lean_h1(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aragora_fuzzing::chaos_experiment(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aragora_fuzzing::alert_webhook(data));

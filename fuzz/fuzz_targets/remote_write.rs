//! Fuzz target: the remote_write decoder must not panic and must push exactly
//! the representable samples it counted (see `metricsstream_fuzz::remote_write`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| metricsstream_fuzz::remote_write(data));

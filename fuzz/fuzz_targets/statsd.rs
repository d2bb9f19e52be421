//! Fuzz target: the statsd parser must not panic, must keep its record invariants
//! and (see `metricsstream_fuzz::statsd`) agree with itself across its modes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| metricsstream_fuzz::statsd(data));

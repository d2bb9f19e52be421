//! Fuzz target: the sans-IO HTTP/1.1 server connection and the routing /
//! query / credential helpers must not panic and must stay bounded.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| metricsstream_fuzz::http(data));

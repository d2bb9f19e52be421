//! Stable stand-in for the cargo-fuzz targets (the three parsers and HTTP): runs the fuzz targets' checking
//! functions (shared source: `fuzz/src/lib.rs`) over every seed in
//! `fuzz/seeds/<target>/`, over byte-level mutations of those seeds, and over
//! proptest-generated inputs. Parser-only: it does not start the binary or EAL.
//!
//! "Bounded behaviour" is checked by the parsers' own invariants plus a wall
//! clock budget per input (a linear parser handles these sizes in microseconds).

#[path = "../fuzz/src/lib.rs"]
mod fuzz_checks;

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 5] = [
    ("line_protocol", fuzz_checks::line_protocol),
    ("json", fuzz_checks::json),
    ("statsd", fuzz_checks::statsd),
    ("http", fuzz_checks::http),
    ("remote_write", fuzz_checks::remote_write),
];

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed dir {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    files.sort();
    let seeds: Vec<_> = files.iter().map(|path| std::fs::read(path).expect("seed file")).collect();
    assert!(!seeds.is_empty(), "no seeds for {target}");
    seeds
}

fn run_bounded(check: Check, input: &[u8]) {
    let started = Instant::now();
    check(input);
    assert!(started.elapsed() < Duration::from_secs(5), "input of {} bytes took {:?}", input.len(), started.elapsed());
}

#[test]
fn every_seed_passes_its_target() {
    for (target, check) in TARGETS {
        for seed in seeds(target) {
            run_bounded(check, &seed);
        }
    }
}

#[test]
fn every_seed_prefix_passes_its_target() {
    // Truncation is the most common real-world corruption (short reads, MTU).
    for (target, check) in TARGETS {
        for seed in seeds(target) {
            for end in 0..=seed.len() {
                run_bounded(check, &seed[..end]);
            }
        }
    }
}

/// A seed mutated like a dumb fuzzer would: flip, insert, delete, splice bytes
/// that matter to the grammars.
fn mutated(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"\\\"=, :|#@\n\r\t{}[]-+.eEiutTfF0123456789\xff\x00";
    let mut out = seed.to_vec();
    for &(position, kind, byte) in edits {
        let at = if out.is_empty() { 0 } else { position % (out.len() + 1) };
        let byte = INTERESTING[byte as usize % INTERESTING.len()];
        match kind % 4 {
            0 if at < out.len() => out[at] = byte,
            1 => out.insert(at, byte),
            2 if at < out.len() => {
                out.remove(at);
            }
            _ => {
                // Duplicate a chunk (grows lines, repeats keys).
                let end = (at + 8).min(out.len());
                let chunk = out[at..end].to_vec();
                out.splice(at..at, chunk);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn mutated_seeds_pass_their_targets(
        target in 0..TARGETS.len(),
        seed_pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..12),
    ) {
        let (name, check) = TARGETS[target];
        let seeds = seeds(name);
        let seed = seed_pick.get(&seeds);
        run_bounded(check, &mutated(seed, &edits));
    }

    #[test]
    fn random_bytes_pass_every_target(data in prop::collection::vec(any::<u8>(), 0..512)) {
        for (_, check) in TARGETS {
            run_bounded(check, &data);
        }
    }

    #[test]
    fn grammar_shaped_text_passes_every_target(
        data in "([a-z\\\\ ,=\"#:|@{}\\[\\]0-9.eEiu-]{0,24}(\r?\n)?){0,8}"
    ) {
        for (_, check) in TARGETS {
            run_bounded(check, data.as_bytes());
        }
    }
}

#[test]
fn large_inputs_stay_linear() {
    // Many fields on one line (the sorted-index dedup path), many lines, deep JSON.
    let mut line = b"m ".to_vec();
    for i in 0..1000 {
        line.extend_from_slice(format!("f{}={}i,", i % 500, i).as_bytes());
    }
    line.pop();
    run_bounded(fuzz_checks::line_protocol, &line);
    let body = b"cpu,host=a,dc=b usage=1.5,idle=2i 1\n".repeat(10_000);
    run_bounded(fuzz_checks::line_protocol, &body);
    let deep = format!("{{\"metrics\":[],\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
    run_bounded(fuzz_checks::json, deep.as_bytes());
    let datagram = b"a:1:2:3:4:5|ms|#a:b,c|@0.5\n".repeat(2_000);
    run_bounded(fuzz_checks::statsd, &datagram);
}

/// The remote_write seeds reach past snappy and protobuf (a seed set that
/// only ever hit the first error would fuzz nothing): the hand-built snappy
/// body decodes to its two finite samples, one NaN, one exemplar, one histogram.
#[test]
fn remote_write_seed_body_decodes() {
    use metricsstream::ingest::remote_write::RemoteWriteDecoder;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/remote_write/snappy_literal_body");
    let body = std::fs::read(path).expect("seed");
    let s = RemoteWriteDecoder::new().decode(&body).expect("seed decodes");
    assert_eq!((s.series, s.samples, s.dropped_non_finite), (2, 2, 1));
    assert_eq!((s.dropped_exemplars, s.dropped_histograms), (1, 1));
}

//! Fuzz target: the one-pass line indexer must not panic, every SIMD level
//! this CPU has must index exactly like the scalar kernel, and the batch (HTTP)
//! mode must count what the lenient (UDP) mode counts.
#![no_main]

use metricsstream::ingest::line_index::{BodySummary, LineIndexer};
use metricsstream::ingest::structural::{Classifier, SimdLevel};
use metricsstream::ingest::{LineProtocolLimits, Precision};

const NOW_NS: i64 = 1_700_000_000_000_000_000;

/// Every indexed line (its full debug form: spans, flags, values) and the summary.
fn index(level: SimdLevel, data: &[u8]) -> (Vec<String>, BodySummary) {
    let classifier = Classifier::with_level(level).expect("an available level");
    let mut indexer = LineIndexer::with_classifier(LineProtocolLimits::default(), classifier);
    let mut lines = Vec::new();
    let summary = indexer.index_lenient(data, Precision::Nanoseconds, NOW_NS, |line| {
        let values: Vec<_> = line.fields().map(|f| format!("{:?}", f.value())).collect();
        lines.push(format!("{line:?} {values:?}"));
        true
    });
    (lines, summary)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let expected = index(SimdLevel::Scalar, data);
    assert_eq!(expected.0.len(), expected.1.lines);
    for level in SimdLevel::available() {
        assert_eq!(index(level, data), expected, "{level:?} differs from scalar");
    }
    let mut indexer = LineIndexer::new();
    match indexer.index_batch(data, Precision::Nanoseconds, NOW_NS, |_| true) {
        Ok(summary) => assert_eq!((summary.lines, expected.1.bad_lines), (expected.1.lines, 0)),
        Err(error) => {
            assert_eq!(Some(error.first_line), expected.1.first_error.map(|e| e.line));
            assert_eq!(error.bad_lines, expected.1.bad_lines);
        }
    }
});

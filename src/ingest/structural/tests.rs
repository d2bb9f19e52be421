//! Every SIMD level against the scalar kernel and the definition, on every
//! length 0-256 at every alignment, plus the cursor against a byte loop.

use super::*;
use proptest::prelude::*;

/// The masks straight from the definition, one byte at a time.
fn reference_masks(bytes: &[u8]) -> Vec<BlockMasks> {
    bytes
        .chunks(BLOCK)
        .map(|block| {
            let mut masks = BlockMasks::default();
            for (i, &b) in block.iter().enumerate() {
                if is_structural(b) {
                    masks.structural |= 1 << i;
                }
                if b >= 0x80 {
                    masks.non_ascii |= 1 << i;
                }
            }
            masks
        })
        .collect()
}

fn masks_of(classifier: &Classifier, bytes: &[u8]) -> Vec<BlockMasks> {
    let mut out = vec![BlockMasks::default(); bytes.len().div_ceil(BLOCK) + 1];
    let written = classifier.classify(bytes, &mut out);
    out.truncate(written);
    out
}

fn classifiers() -> Vec<Classifier> {
    SimdLevel::available().filter_map(Classifier::with_level).collect()
}

/// Every length 0..=256 at every offset 0..64 into a 64-byte-aligned-ish
/// buffer, for one fill pattern.
fn check_all_lengths_and_alignments(buffer: &[u8]) {
    for classifier in classifiers() {
        for offset in 0..64 {
            for len in 0..=256 {
                let Some(bytes) = buffer.get(offset..offset + len) else { continue };
                assert_eq!(
                    masks_of(&classifier, bytes),
                    reference_masks(bytes),
                    "{:?} offset {offset} len {len}",
                    classifier.level()
                );
            }
        }
    }
}

#[test]
fn the_scalar_level_is_always_available_and_detection_is_stable() {
    assert!(SimdLevel::available().any(|l| l == SimdLevel::Scalar));
    assert_eq!(SimdLevel::detected(), SimdLevel::detected());
    assert_eq!(Classifier::new().level(), SimdLevel::detected());
    #[cfg(target_arch = "x86_64")]
    assert!(SimdLevel::available().any(|l| l == SimdLevel::Sse2), "every x86-64 has SSE2");
}

#[test]
fn every_byte_value_classifies_like_the_definition() {
    let all: Vec<u8> = (0..=255u8).collect();
    check_all_lengths_and_alignments(&[all.as_slice(), all.as_slice()].concat());
}

#[test]
fn structural_bytes_at_block_boundaries() {
    // Escapes and quotes straddling every 16/32/64-byte boundary.
    let pattern = b"ab\\\"c\\\\d\\ e,\\,=\"\n\r\t\x7f\x00\xc3\xa9zz";
    let buffer: Vec<u8> = pattern.iter().cycle().take(64 + 256 + 64).copied().collect();
    check_all_lengths_and_alignments(&buffer);
    // Only structural bytes, and none at all.
    check_all_lengths_and_alignments(&[b'\\'; 320]);
    check_all_lengths_and_alignments(&[b'x'; 320]);
    check_all_lengths_and_alignments(&[0x80; 320]);
}

#[test]
fn a_short_output_stops_the_kernel() {
    let body = [b','; 200];
    for classifier in classifiers() {
        let mut out = [BlockMasks::default(); 2];
        assert_eq!(classifier.classify(&body, &mut out), 2);
        assert_eq!(out, [BlockMasks { structural: u64::MAX, non_ascii: 0 }; 2]);
        assert_eq!(classifier.classify(&body, &mut []), 0);
    }
}

fn naive_positions(bytes: &[u8], from: usize) -> Vec<usize> {
    (from..bytes.len()).filter(|&i| bytes.get(i).is_some_and(|&b| is_structural(b))).collect()
}

#[test]
fn cursor_walks_long_bodies_across_windows() {
    let line = b"cpu,host=a\\ b,region=eu usage=1.5,s=\"x\\\"y\" 1700000000000000000\n";
    let body: Vec<u8> = line.iter().cycle().take(5000).copied().collect();
    for classifier in classifiers() {
        let got: Vec<usize> = StructuralCursor::new(&body, classifier).positions(0).collect();
        assert_eq!(got, naive_positions(&body, 0), "{:?}", classifier.level());
        let mut cursor = StructuralCursor::new(&body, classifier);
        // Jumps, including backwards (reclassifies) and past the end.
        for from in [0, 4999, 1000, 1, 1024, 1023, 5000, 7000] {
            let expected = naive_positions(&body, from).first().copied().unwrap_or(body.len());
            assert_eq!(cursor.next_from(from), expected, "from {from}");
        }
    }
}

#[test]
fn non_ascii_tracking_is_conservative_and_exact_for_ascii_prefixes() {
    let mut body = vec![b'a'; 300];
    body[200] = 0xc3;
    body[201] = 0xa9;
    let mut cursor = StructuralCursor::new(&body, Classifier::new());
    assert_eq!(cursor.next_from(0), body.len());
    assert!(cursor.may_have_non_ascii_from(0));
    assert!(cursor.may_have_non_ascii_from(201));
    assert!(!cursor.may_have_non_ascii_from(202));
    let ascii = [b','; 100];
    let mut cursor = StructuralCursor::new(&ascii, Classifier::new());
    assert_eq!(cursor.next_from(0), 0);
    assert!(!cursor.may_have_non_ascii_from(0));
}

proptest! {
    #[test]
    fn random_bodies_give_identical_masks_and_positions(
        bytes in proptest::collection::vec(
            prop_oneof![any::<u8>(), Just(b'\\'), Just(b'"'), Just(b' '), Just(b','), Just(b'='), Just(b'\n'), Just(b'a')],
            0..700,
        ),
        offset in 0usize..64,
    ) {
        let bytes = bytes.get(offset.min(bytes.len())..).unwrap_or(&[]);
        let expected = naive_positions(bytes, 0);
        for classifier in classifiers() {
            prop_assert_eq!(masks_of(&classifier, bytes), reference_masks(bytes));
            let got: Vec<usize> = StructuralCursor::new(bytes, classifier).positions(0).collect();
            prop_assert_eq!(&got, &expected);
        }
    }
}

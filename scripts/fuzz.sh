#!/usr/bin/env bash
# Runs the cargo-fuzz (libFuzzer) targets in fuzz/ for a fixed time each,
# starting from their seed corpora; a crash fails the run and leaves the
# input in fuzz/artifacts/TARGET/. Works on the stable toolchain: cargo-fuzz's
# coverage flags are stable, its -Z flags are unlocked with RUSTC_BOOTSTRAP,
# and no sanitizer is used (safe Rust; panics and overflow checks are what the
# targets look for). With a nightly toolchain, pass --asan to add ASan.
#
#   scripts/fuzz.sh [--seconds S] [--asan] [TARGET...]   (default: every target, 30 s)
#
# Targets are fuzz_targets/*.rs, each with seeds in seeds/TARGET/ (line_index: the
# structural SIMD indexer, checked against its scalar kernel on every input).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=30 sanitizer=none targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --asan) sanitizer=address; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "unknown argument: $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(find fuzz_targets -name '*.rs' -printf '%f\n' | sed 's/\.rs$//' | sort)
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: scripts/setup.sh --tests installs it" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1

cargo fuzz build -s "$sanitizer" --release
for t in "${targets[@]}"; do
    corpus=corpus/$t
    mkdir -p "$corpus"
    # -max_total_time bounds the run; the summary line carries the run count.
    out=$(cargo fuzz run -s "$sanitizer" --release "$t" "$corpus" "seeds/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>&1) || { echo "$out" | tail -40; echo "fuzz: $t FAILED" >&2; exit 1; }
    runs=$(echo "$out" | awk '/stat::number_of_executed_units/ { print $2 }')
    echo "fuzz: $t: $runs runs in ${seconds}s, no crash (corpus $(find "$corpus" -type f | wc -l) inputs)"
done

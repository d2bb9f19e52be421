#!/usr/bin/env bash
# Writer benchmark: `metricsstream write-load` (release, ack=durable,
# fsync every 10 ms) against `dd ... conv=fdatasync` on the same filesystem in
# the same run. Prints records/s, MB/s, dd MB/s and the ratio (goal >= 0.8).
#
# Env: BENCH_DIR (default target/bench-writer, must be on the disk under test),
#      RECORDS (default 10000000), BATCH (records per batch, default 1000),
#      FSYNC_MS (default 10), DD_MB (default 1024), RUNS (default 3; best run counts).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR=${BENCH_DIR:-target/bench-writer}
RECORDS=${RECORDS:-10000000}
BATCH=${BATCH:-1000}
FSYNC_MS=${FSYNC_MS:-10}
DD_MB=${DD_MB:-1024}
RUNS=${RUNS:-3}

cargo build --release --bin metricsstream >&2
BIN=target/release/metricsstream
mkdir -p "$BENCH_DIR"
cleanup() { rm -rf "$BENCH_DIR/log" "$BENCH_DIR/ddtest"; }
trap cleanup EXIT

best_rps=0 best_mbps=0 best_line=""
for run in $(seq 1 "$RUNS"); do
    rm -rf "$BENCH_DIR/log"
    line=$(timeout 300 "$BIN" write-load --data-dir "$BENCH_DIR/log" --ack durable \
        --records "$RECORDS" --batch-records "$BATCH" --fsync-interval-ms "$FSYNC_MS" | tail -1)
    echo "write-load run $run: $line" >&2
    rps=$(sed -n 's/.*records_per_sec=\([0-9.]*\).*/\1/p' <<<"$line")
    mbps=$(sed -n 's/.*mb_per_sec=\([0-9.]*\).*/\1/p' <<<"$line")
    if awk -v a="$mbps" -v b="$best_mbps" 'BEGIN{exit !(a>b)}'; then
        best_rps=$rps best_mbps=$mbps best_line=$line
    fi
done
rm -rf "$BENCH_DIR/log"

best_dd=0
for run in $(seq 1 "$RUNS"); do
    # dd's last line: "N bytes (...) copied, S s, X MB/s"; recompute MB/s (1e6) from N and S.
    ddline=$(dd if=/dev/zero of="$BENCH_DIR/ddtest" bs=1M count="$DD_MB" conv=fdatasync 2>&1 | tail -1)
    rm -f "$BENCH_DIR/ddtest"
    dd_mbps=$(awk '{for(i=1;i<=NF;i++) if($i=="copied,") s=$(i+1); printf "%.1f", $1/1e6/s}' <<<"$ddline")
    echo "dd run $run: $ddline -> ${dd_mbps} MB/s" >&2
    if awk -v a="$dd_mbps" -v b="$best_dd" 'BEGIN{exit !(a>b)}'; then best_dd=$dd_mbps; fi
done

ratio=$(awk -v a="$best_mbps" -v b="$best_dd" 'BEGIN{printf "%.2f", a/b}')
echo "writer: records_per_sec=$best_rps mb_per_sec=$best_mbps (records=$RECORDS batch=$BATCH fsync_ms=$FSYNC_MS)"
echo "dd:     mb_per_sec=$best_dd (bs=1M count=$DD_MB conv=fdatasync)"
echo "ratio:  $ratio (goal >= 0.8)"

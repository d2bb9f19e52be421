#!/usr/bin/env bash
# Writer benchmark: `metricsstream write-load` (release, ack=durable, fsync
# every 10 ms) against `dd if=/dev/zero ... conv=fdatasync` writing the same
# number of bytes on the same filesystem, in the same run. Runs are paired
# (writer, then dd) so both see the same disk/CPU conditions; prints the
# median records/s, MB/s, dd MB/s and the median per-pair ratio (goal >= 0.8).
#
# Env: BENCH_DIR (default target/bench-writer; must be on the disk under test),
#      RECORDS (default 10000000), BATCH (records per batch, default 1000),
#      FSYNC_MS (default 10), RUNS (pairs, default 5).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR=${BENCH_DIR:-target/bench-writer}
RECORDS=${RECORDS:-10000000}
BATCH=${BATCH:-1000}
FSYNC_MS=${FSYNC_MS:-10}
RUNS=${RUNS:-5}

cargo build --release --bin metricsstream >&2
BIN=target/release/metricsstream
mkdir -p "$BENCH_DIR"
cleanup() { rm -rf "$BENCH_DIR/log" "$BENCH_DIR/ddtest"; }
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2 }'; }

rps_list="" mbps_list="" dd_list="" ratio_list=""
for run in $(seq 1 "$RUNS"); do
    rm -rf "$BENCH_DIR/log"
    line=$(timeout 300 "$BIN" write-load --data-dir "$BENCH_DIR/log" --ack durable \
        --records "$RECORDS" --batch-records "$BATCH" --fsync-interval-ms "$FSYNC_MS" | tail -1)
    rm -rf "$BENCH_DIR/log"
    rps=$(sed -n 's/.*records_per_sec=\([0-9.]*\).*/\1/p' <<<"$line")
    mbps=$(sed -n 's/.*mb_per_sec=\([0-9.]*\).*/\1/p' <<<"$line")
    bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$line")
    # Same byte count through dd; its last line is "N bytes (...) copied, S s, X MB/s".
    ddline=$(dd if=/dev/zero of="$BENCH_DIR/ddtest" bs=1M count=$(( (bytes + 1048575) / 1048576 )) conv=fdatasync 2>&1 | tail -1)
    rm -f "$BENCH_DIR/ddtest"
    dd_mbps=$(awk '{for(i=1;i<=NF;i++) if($i=="copied,") s=$(i+1); printf "%.1f", $1/1e6/s}' <<<"$ddline")
    ratio=$(awk -v a="$mbps" -v b="$dd_mbps" 'BEGIN{printf "%.2f", a/b}')
    echo "pair $run: writer $line | dd ${dd_mbps} MB/s | ratio $ratio" >&2
    rps_list+="$rps"$'\n' mbps_list+="$mbps"$'\n' dd_list+="$dd_mbps"$'\n' ratio_list+="$ratio"$'\n'
done

echo "writer: records_per_sec=$(median <<<"${rps_list%$'\n'}") mb_per_sec=$(median <<<"${mbps_list%$'\n'}") (median of $RUNS; records=$RECORDS batch=$BATCH fsync_ms=$FSYNC_MS ack=durable)"
echo "dd:     mb_per_sec=$(median <<<"${dd_list%$'\n'}") (median; same bytes, bs=1M conv=fdatasync)"
echo "ratio:  $(median <<<"${ratio_list%$'\n'}") (median of per-pair writer/dd; goal >= 0.8)"

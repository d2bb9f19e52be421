#!/usr/bin/env bash
# What `--trace-pcap` costs when it is off: replay Mpps of the default build
# (trace code compiled in, tracing disabled) against a build without the
# `trace-pcap` feature (trace code compiled out), same pcap, same lcore,
# rounds alternating so background load hits both alike. Also prints the
# rate with tracing on (to a tmpfs file when /dev/shm exists), for scale.
#
#   scripts/bench-trace.sh [--seconds S] [--rounds N] [--json OUT]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=5 rounds=5 json=""
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --json) json=$2; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

cargo build --release --quiet
cargo build --release --quiet --no-default-features --target-dir target/no-trace
with=target/release/metricsstream without=target/no-trace/release/metricsstream
tmp=$(mktemp -d)
shm=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
trap 'rm -rf "$tmp" "$shm"' EXIT
"$with" gen-pcap --kind udp-line --out "$tmp/load.pcap" --packets 65536 --seed 42 >/dev/null

mpps() {
    local bin=$1; shift
    "$bin" replay --pcap "$tmp/load.pcap" --duration "$seconds" --stats-interval 0 --report "$tmp/r.json" "$@" >/dev/null 2>&1
    python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["rx_mpps"])' "$tmp/r.json"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

a=() b=() c=()
for i in $(seq "$rounds"); do
    b+=("$(mpps "$without")")
    a+=("$(mpps "$with")")
    c+=("$(mpps "$with" --trace-pcap "$shm/trace.pcap")")
    rm -f "$shm/trace.pcap"
    echo "round $i: compiled out ${b[-1]} Mpps | compiled in, off ${a[-1]} Mpps | on ${c[-1]} Mpps"
done
am=$(median "${a[@]}") bm=$(median "${b[@]}") cm=$(median "${c[@]}")
spread() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { printf "%.3f-%.3f", a[1], a[NR] }'; }
ratio=$(awk -v a="$am" -v b="$bm" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
echo "replay, 1 worker lcore, ${seconds}s x $rounds rounds, nproc $(nproc), load avg $(cut -d' ' -f1 /proc/loadavg)"
echo "trace compiled out: $bm Mpps (median; range $(spread "${b[@]}"))"
echo "trace compiled in, off: $am Mpps (median; range $(spread "${a[@]}"))"
echo "ratio off/compiled-out: $ratio (goal: within the rounds' noise)"
echo "trace on (pcap to $(df --output=fstype "$shm" | tail -1)): $cm Mpps (median)"
if [ -n "$json" ]; then
    printf '{"compiled_out_mpps": %s, "off_mpps": %s, "on_mpps": %s, "ratio_off": %s}\n' "$bm" "$am" "$cm" "$ratio" > "$json"
fi

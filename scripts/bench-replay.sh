#!/usr/bin/env bash
# Replay Mpps of metricsstream against dpdk-testpmd --forward-mode=rxonly, in
# one run, on the same pcap, the same vdev (net_pcap, infinite_rx=1) and the
# same lcore: classification only (`replay`), and the full UDP ingestion
# pipeline (`replay --config`: every datagram parsed, limited and handed to
# the writer, which persists to a scratch directory). Rounds alternate so that
# background load hits all three alike; medians and ratios are printed.
# With --baseline-bin, every round also runs the pipeline with that (older)
# metricsstream binary right after ours: an A/B of a change under the same load.
# The generated line-protocol load has its tags sorted, as Telegraf and the
# Influx client libraries send them (stored as received); each round also runs
# the pipeline on the same load with unsorted tags (every line canonicalised
# before it is stored: the worst case), reported beside it.
#
#   scripts/bench-replay.sh [--pcap FILE] [--kind udp-line|udp-statsd|http]
#                           [--seconds S] [--rounds N] [--json OUT] [--baseline-bin BIN]
set -euo pipefail
cd "$(dirname "$0")/.."

kind=udp-line seconds=5 rounds=3 pcap="" json="" baseline="" unsorted_pcap=""
while [ $# -gt 0 ]; do
    case "$1" in
        --pcap) pcap=$2; shift 2 ;;
        --kind) kind=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --json) json=$2; shift 2 ;;
        --baseline-bin) baseline=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd missing: run scripts/setup.sh (package dpdk-dev)" >&2; exit 1; }
cargo build --release --quiet
bin=target/release/metricsstream
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$pcap" ]; then
    pcap=$tmp/load.pcap
    "$bin" gen-pcap --kind "$kind" --out "$pcap" --packets 65536 --seed 42 >/dev/null
    if [ "$kind" = udp-line ]; then
        unsorted_pcap=$tmp/load-unsorted.pcap
        "$bin" gen-pcap --kind "$kind" --out "$unsorted_pcap" --packets 65536 --seed 42 --tag-order unsorted >/dev/null
    fi
fi
packets=$(python3 - "$pcap" <<'PY'
import struct, sys
with open(sys.argv[1], 'rb') as f:
    magic = f.read(24)[:4]
    end = '<' if magic in (b'\xd4\xc3\xb2\xa1', b'\x4d\x3c\xb2\xa1') else '>'
    n = 0
    while True:
        h = f.read(16)
        if len(h) < 16:
            break
        f.seek(struct.unpack(end + 'IIII', h)[2], 1)
        n += 1
print(n)
PY
)
eal=(--no-huge -m 1024 --no-shconf --no-pci -l 0-1 --log-level '*:error')

testpmd_mpps() {
    # testpmd prints Rx-pps every second; average all but the first (warm-up).
    # (timeout's SIGINT ends it; its exit status 124 is expected.)
    { timeout -s INT "$((seconds + 1))" dpdk-testpmd "${eal[@]}" \
        --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" -- \
        --forward-mode=rxonly --stats-period 1 --total-num-mbufs=$((packets + 16384)) \
        </dev/null 2>/dev/null || true; } | awk '/Rx-pps:/ { n++; if (n > 1) { s += $2; k++ } } END { if (k) printf "%.3f", s / k / 1e6; else print "0" }'
}

replay_mpps() {
    "${replay_bin:-$bin}" replay --pcap "${replay_pcap:-$pcap}" --duration "$seconds" --stats-interval 0 --report "$tmp/r.json" "$@" >/dev/null 2>&1
    python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["rx_mpps"])' "$tmp/r.json"
}

# The pipeline run: generous limits (this measures speed, not limiting).
printf '[writer]\ndata_dir = "%s/data"\n[limits]\ndefault_rate = 1000000000\ndefault_burst = 1000000000\n' "$tmp" > "$tmp/pipeline.toml"
pipeline() {
    rm -rf "$tmp/data"
    replay_mpps --config "$tmp/pipeline.toml"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.3f %d %d %d" % (r["records_written"]/r["duration_s"]/1e6, r["records_parsed"], r["records_written"], r["records_dropped_writer_full"]))' "$tmp/r.json" > "$tmp/pipeline.txt"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "load avg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
t=() r=() u=() w=() b=() x=()
for i in $(seq "$rounds"); do
    t+=("$(testpmd_mpps)")
    r+=("$(replay_mpps)")
    u+=("$(pipeline)")
    read -r written_mrps parsed written dropped < "$tmp/pipeline.txt"
    w+=("$written_mrps")
    echo "round $i: testpmd rxonly ${t[-1]} Mpps | replay ${r[-1]} Mpps | pipeline ${u[-1]} Mpps, records written ${written_mrps} M/s (parsed $parsed, written $written, dropped writer-full $dropped)"
    if [ -n "$unsorted_pcap" ]; then
        x+=("$(replay_pcap=$unsorted_pcap pipeline)")
        echo "round $i: pipeline on unsorted tags ${x[-1]} Mpps"
    fi
    if [ -n "$baseline" ]; then
        b+=("$(replay_bin=$baseline pipeline)")
        echo "round $i: baseline pipeline ${b[-1]} Mpps ($baseline)"
    fi
done
tm=$(median "${t[@]}") rm_=$(median "${r[@]}") um=$(median "${u[@]}") wm=$(median "${w[@]}")
ratio=$(awk -v a="$rm_" -v b="$tm" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
uratio=$(awk -v a="$um" -v b="$tm" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
frame=$(( $(stat -c %s "$pcap") / packets - 16 ))
echo "pcap: $pcap ($packets frames, ~$frame B avg), 1 worker lcore, ${seconds}s x $rounds rounds, nproc $(nproc), load avg $(cut -d' ' -f1 /proc/loadavg)"
echo "testpmd rxonly: $tm Mpps (median)"
echo "metricsstream replay: $rm_ Mpps (median)"
echo "ratio replay/testpmd: $ratio (goal >= 0.8)"
echo "metricsstream UDP pipeline (parse, limit, write): $um Mpps, $wm M records/s written (median)"
echo "ratio pipeline/testpmd: $uratio (goal >= 0.5)"
xm=null
if [ -n "$unsorted_pcap" ]; then
    xm=$(median "${x[@]}")
    echo "metricsstream UDP pipeline, same load with unsorted tags (every line canonicalised): $xm Mpps (median), ratio to testpmd $(awk -v a="$xm" -v b="$tm" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
fi
if [ -n "$baseline" ]; then
    bm=$(median "${b[@]}")
    echo "baseline pipeline ($baseline): $bm Mpps (median), ratio to testpmd $(awk -v a="$bm" -v b="$tm" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'); ours/baseline $(awk -v a="$um" -v b="$bm" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
fi
if [ -n "$json" ]; then
    printf '{"pcap_frames": %s, "avg_frame_bytes": %s, "testpmd_mpps": %s, "replay_mpps": %s, "ratio": %s, "pipeline_mpps": %s, "pipeline_records_written_mps": %s, "pipeline_ratio": %s, "pipeline_unsorted_tags_mpps": %s}\n' \
        "$packets" "$frame" "$tm" "$rm_" "$ratio" "$um" "$wm" "$uratio" "$xm" > "$json"
fi

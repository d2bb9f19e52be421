#!/usr/bin/env bash
# The main job, end to end on any Debian/Ubuntu machine, no NIC, no hugepages
# (DPDK on --no-huge virtual ports): set up (scripts/setup.sh), build, then run
# the appliance with dpdk-config/demo.toml, every run writing into one fresh
# log (demo/data):
#   1. UDP line protocol: `replay --config` of a gen-pcap udp-line capture
#      (net_pcap, looped): every datagram parsed, limited and written;
#   2. UDP StatsD: the same on a gen-pcap udp-statsd capture;
#   3. HTTP: `bench`, serve's worker and loadgen's in one process over a ring
#      pair, POSTing a 100-line body to /write (durable acks);
#   4. the classify-only packet rate (`replay` without --config), for scale;
#   5. `verify` of the log: its record count must equal the sum of the records
#      the three runs reported written.
# Prints one summary; exits non-zero if a run fails or the log disagrees.
# Each run's own output and JSON report are kept in demo/.
#
# Usage: scripts/demo.sh [--seconds S] [--packets N] [--connections C]
#   --seconds S      length of each of the four runs (default 5)
#   --packets N      frames per generated pcap (default 65536)
#   --connections C  HTTP connections of the bench run (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=5 packets=65536 connections=100
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds|--packets|--connections) [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; } ;;
    esac
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --packets) packets=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in "$seconds" "$packets" "$connections"; do
    case "$v" in ''|*[!0-9]*|0) echo "--seconds, --packets and --connections take positive integers" >&2; exit 2 ;; esac
done

config=dpdk-config/demo.toml
# The log directory is the config's: one source of truth for what verify reads.
data=$(sed -n 's/^data_dir *= *"\([^"]*\)".*/\1/p' "$config")
case "$data" in demo/?*) ;; *) echo "$config: [writer] data_dir must be under demo/ (it is removed first), not '$data'" >&2; exit 1 ;; esac

bash scripts/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
echo "== building (release)"
cargo build --release --quiet --bin metricsstream
bin=target/release/metricsstream
mkdir -p demo
rm -rf "$data"
started=$(date +%s)

# run NAME CMD...: CMD's output goes to demo/NAME.log; a failure shows its tail and stops the demo.
run() {
    local name=$1
    shift
    if ! "$@" >"demo/$name.log" 2>&1; then
        echo "demo: $name failed: $*" >&2
        tail -n 20 "demo/$name.log" >&2
        exit 1
    fi
}

for kind in udp-line udp-statsd; do
    echo "== $kind: generating $packets frames, then ${seconds}s of replay --config $config"
    run "gen-$kind" "$bin" gen-pcap --kind "$kind" --out "demo/$kind.pcap" --packets "$packets"
    run "$kind" "$bin" replay --pcap "demo/$kind.pcap" --config "$config" --duration "$seconds" \
        --stats-interval 0 --report "demo/$kind.json"
done

echo "== http: ${seconds}s of bench --config $config, $connections connections"
# One 100-line line-protocol body with current timestamps.
now=$(date +%s)
for i in $(seq 0 99); do
    printf 'cpu,host=h%d,cpu=c%d usage=%d.5,idle=%di %d%09d\n' $((i % 10)) $((i % 4)) "$i" "$i" "$now" "$i"
done >demo/body.lp
run http "$bin" bench --config "$config" --body demo/body.lp --connections "$connections" \
    --duration "$seconds" --timeout-ms 30000 --stats-interval 0 --report demo/http.json

echo "== classify only: ${seconds}s of replay without --config"
run classify "$bin" replay --pcap demo/udp-line.pcap --duration "$seconds" --stats-interval 0 --report demo/classify.json

echo "== verify --data-dir $data"
run verify "$bin" verify --data-dir "$data"

python3 - "$seconds" "$data" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" "$(($(date +%s) - started))" <<'PY'
import json, re, sys

seconds, data, nproc, load, took = sys.argv[1:]
load_json = lambda name: json.load(open(f"demo/{name}.json"))
n = lambda x: f"{x:,.0f}"

print(f"\n== metricsstream demo: {seconds} s per run, nproc {nproc}, load average {load} at the end, "
      f"{took} s of runs; log {data}")
written = {}
for kind, label in (("udp-line", "UDP line protocol"), ("udp-statsd", "UDP StatsD")):
    r = load_json(kind)
    d = r["duration_s"]
    print(f"{label} (replay --config, 1 worker): {r['rx_mpps']:.3f} Mpps; records/s parsed {n(r['records_parsed'] / d)}, "
          f"accepted {n(r['records_accepted'] / d)}, written {n(r['records_written'] / d)}")
    print(f"  records: parsed {r['records_parsed']} = accepted {r['records_accepted']} + limited {r['records_limited']}"
          f" + dropped (writer full) {r['records_dropped_writer_full']}; written {r['records_written']}"
          f"; invalid lines {r['records_invalid']}")
    written[label] = r["records_written"]

r = load_json("http")
lg, sv = r["loadgen"], r["serve"]
http = lg["http"]
print(f"HTTP (bench: serve + loadgen over a ring pair, {lg['connections']} connections, ack {r['ack'].lower()}): "
      f"{lg['requests_per_s']:.0f} req/s, {n(lg['records_2xx_per_s'])} records/s (in 2xx), "
      f"latency p50 {lg['latency']['p50_us'] / 1000:.1f} ms, p99 {lg['latency']['p99_us'] / 1000:.1f} ms")
print(f"  requests: 2xx {http['status_2xx']}, non-2xx {http['responses'] - http['status_2xx']}, "
      f"socket errors {lg['socket_errors']}; records accepted {sv['http']['records_accepted']}, "
      f"limited {sv['http']['records_limited']}, rejected {sv['http']['records_rejected']}, written {sv['records_written']}")
written["HTTP"] = sv["records_written"]

c = load_json("classify")
print(f"classify only (no parse/limit/write), udp-line pcap: {c['rx_mpps']:.3f} Mpps")

out = open("demo/verify.log").read()
m = re.search(r"^records=(\d+) frames=(\d+) segments=(\d+) corrupt=(\d+)$", out, re.M)
if not m:
    sys.exit(f"demo: no 'records=N frames=N segments=N corrupt=N' line in verify's output:\n{out}")
found, frames, segments, corrupt = map(int, m.groups())
total = sum(written.values())
agrees = found == total and corrupt == 0
print(f"log (verify --data-dir {data}): {found} records in {frames} frames, {segments} segments, {corrupt} corrupt; "
      f"the runs reported {' + '.join(map(str, written.values()))} = {total} written: "
      + ("equal" if agrees else "MISMATCH"))
sys.exit(0 if agrees else 1)
PY

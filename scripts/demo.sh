#!/usr/bin/env bash
# The main job, end to end on any Debian/Ubuntu machine, no NIC, no hugepages:
# set up, build, generate realistic line-protocol load, replay it through DPDK
# for ~10 s (net_pcap on --no-huge), and print the summary with Mpps.
#
#   scripts/demo.sh [--kind udp-line|udp-statsd|http] [--seconds S] [--packets N]
set -euo pipefail
cd "$(dirname "$0")/.."

kind=udp-line seconds=10 packets=65536
while [ $# -gt 0 ]; do
    case "$1" in
        --kind) kind=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --packets) packets=$2; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

bash scripts/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
echo "== building (release)"
cargo build --release --quiet
bin=target/release/metricsstream
mkdir -p demo
echo "== generating $packets frames of $kind load"
"$bin" gen-pcap --kind "$kind" --out "demo/$kind.pcap" --packets "$packets"
echo "== replaying through DPDK (net_pcap, --no-huge) for ${seconds}s"
"$bin" replay --pcap "demo/$kind.pcap" --duration "$seconds" --report demo/report.json
echo "== done: full report in demo/report.json"

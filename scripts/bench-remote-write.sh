#!/usr/bin/env bash
# Prometheus remote_write benchmark (#17): samples/s into the appliance's
# `POST /api/v1/write` against VictoriaMetrics' own `/api/v1/write`, the same
# snappy-protobuf body (`metricsstream gen-body --format remote-write`: 100
# series, one sample each, labels as Prometheus sends them), the same wrk load
# over the same veth-namespace path, in one run:
#   1. VictoriaMetrics (kernel TCP stack) on 198.18.0.1:8428 at C connections;
#      then its series count is checked and it is stopped.
#   2. The appliance (net_af_packet on the app-side veth) at C connections,
#      once with ack = "durable" (2xx after the fsync), once with "enqueued"
#      (2xx when handed to the writer, as VictoriaMetrics answers).
# Every run: wrk -t 2 -c C -d D --latency, headers Content-Encoding: snappy,
# Content-Type: application/x-protobuf, X-Prometheus-Remote-Write-Version: 0.1.0.
# Prints a table (req/s, samples/s = 2xx req/s x series, p50, p99, errors),
# the ratios appliance / VictoriaMetrics, and the checks: the appliance's
# records_written and remote_write_samples against the 2xx wrk counted.
#
# Usage: sudo scripts/bench-remote-write.sh [--seconds D] [--connections C] [--series N] [--quick]
# Needs root, wrk, curl, ethtool, jq, iproute2 and victoria-metrics (missing
# ones are installed with apt-get). Busy-polls CPU 1: run nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=10
CONNS=32
SERIES=100
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
        --quick) SECONDS_PER_RUN=3; shift ;;
        --connections) CONNS=$2; shift 2 ;;
        --series) SERIES=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$SECONDS_PER_RUN$CONNS$SERIES" in *[!0-9]*) echo "--seconds, --connections and --series take integers" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
# shellcheck source=scripts/lib/veth-bench.sh
. scripts/lib/veth-bench.sh
install_missing wrk:wrk curl:curl ethtool:ethtool jq:jq ip:iproute2 victoria-metrics:victoria-metrics

BIN=target/release/metricsstream
[ -x "$BIN" ] || cargo build --release --bin metricsstream >&2

veth_bench_setup brw  # namespaces, veth, $TMP: removed on exit
LOAD_START=$(uptime | sed 's/.*load average: //')

"$BIN" gen-body --format remote-write --series "$SERIES" --out "$TMP/body.rw" >&2
post_lua "$TMP/body.rw" "Content-Type: application/x-protobuf" "Content-Encoding: snappy" \
    "X-Prometheus-Remote-Write-Version: 0.1.0" >"$TMP/post.lua"

# --- 1. VictoriaMetrics on the kernel stack ---------------------------------
ip -n "$APP_NS" addr add "$ADDR/24" dev "$APP_IF"
ip netns exec "$APP_NS" victoria-metrics -storageDataPath="$TMP/vm" -httpListenAddr="$ADDR:8428" \
    -loggerLevel=ERROR >"$TMP/vm.log" 2>&1 &
VM_PID=$!
wait_http "http://$ADDR:8428/health" 200 || { cat "$TMP/vm.log" >&2; exit 1; }
run_wrk VictoriaMetrics "$CONNS" "http://$ADDR:8428/api/v1/write"
ip netns exec "$CLI_NS" curl -s -m 30 "http://$ADDR:8428/internal/force_flush" >/dev/null || true
vm_series=$(ip netns exec "$CLI_NS" curl -s -m 30 -G "http://$ADDR:8428/api/v1/series" \
    --data-urlencode 'match[]=bench_cpu_usage' | jq '.data | length' || echo "?")
stop_pid "$VM_PID"; VM_PID=""
ip -n "$APP_NS" addr flush dev "$APP_IF"
ip -n "$CLI_NS" neigh flush dev "$CLI_IF"

# --- 2. the appliance, durable then enqueued acks ---------------------------
CHECKS="VictoriaMetrics: series bench_cpu_usage after its run: $vm_series (want $SERIES)"$'\n'
for ack in durable enqueued; do
    rm -rf "$TMP/data"
    cat >"$TMP/config.toml" <<CONF
[net]
ipv4 = "$ADDR/24"
[writer]
data_dir = "$TMP/data"
ack = "$ack"
[limits]
default_rate = 1000000000
default_burst = 1000000000
CONF
    ip netns exec "$APP_NS" "$BIN" serve --config "$TMP/config.toml" --stats-interval 0 --report "$TMP/report.json" \
        -- --no-huge -m 1024 --no-shconf --no-pci -l 0-1 --log-level '*:warning' \
        --vdev "net_af_packet0,iface=$APP_IF,framecnt=16384" >"$TMP/serve.log" 2>&1 &
    APP_PID=$!
    wait_http "http://$ADDR:8080/ping" 204 || { cat "$TMP/serve.log" >&2; exit 1; }
    run_wrk "appliance-$ack" "$CONNS" "http://$ADDR:8080/api/v1/write"
    rc=0
    kill -TERM "$APP_PID"
    wait "$APP_PID" || rc=$?
    APP_PID=""
    [ "$rc" -eq 0 ] || { echo "serve exited with $rc" >&2; cat "$TMP/serve.log" >&2; }
    acked=$(awk -v l="appliance-$ack" -v n="$SERIES" '$1 == l { s += ($8 - $7) * n } END { print s + 0 }' "$RESULTS")
    CHECKS+="appliance-$ack: records_written $(jq -r '.records_written // "?"' "$TMP/report.json"), remote_write_samples $(jq -r '.http.remote_write_samples // "?"' "$TMP/report.json"); 2xx counted by wrk x $SERIES: $acked (requests in flight when wrk stops may add more); serve exit $rc"$'\n'
    CHECKS+="appliance-$ack: statuses (report, incl. /ping) $(jq -c '.http | with_entries(select(.key | startswith("responses_")))' "$TMP/report.json")"$'\n'
done

# --- table ------------------------------------------------------------------
echo
echo "remote_write, wrk -t 2 -c $CONNS -d ${SECONDS_PER_RUN}s --latency, $SERIES samples per body ($(stat -c %s "$TMP/body.rw") bytes, snappy), veth + net_af_packet, $(nproc) cores"
echo "load average (1, 5, 15 min): $LOAD_START at the start, $(uptime | sed 's/.*load average: //') at the end"
echo
echo "| system | connections | req/s | samples/s | p50 | p99 | socket errors | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
awk -v n="$SERIES" '{ printf "| %s | %d | %d | %d | %.2f ms | %.2f ms | %d | %d |\n", $1, $2, $3, ($8 > 0 ? $3 * ($8 - $7) / $8 * n : 0), $4 / 1000, $5 / 1000, $6, $7 }' "$RESULTS"
echo
awk '
    { ok[$1] = $8 > 0 ? $3 * ($8 - $7) / $8 : 0; p99[$1] = $5 }
    END {
        if (ok["VictoriaMetrics"] > 0) for (s in ok) if (s != "VictoriaMetrics")
            printf "%s / VictoriaMetrics (samples/s): %.2fx, p99 %.1f ms vs %.1f ms (goal: >= 3x with p99 no worse)\n", s, ok[s] / ok["VictoriaMetrics"], p99[s] / 1000, p99["VictoriaMetrics"] / 1000
    }' "$RESULTS" | sort
printf "%s" "$CHECKS"

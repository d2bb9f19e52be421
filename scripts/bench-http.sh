#!/usr/bin/env bash
# HTTP benchmark: the appliance (`metricsstream serve` on DPDK's net_af_packet
# PMD) against VictoriaMetrics (`victoria-metrics`) and nginx (the path's own
# limit), both on the kernel TCP stack, with the same wrk load over the same
# veth-namespace path, in one run:
#   1. VictoriaMetrics /write at C connections (default 32), listening on
#      198.18.0.1:8428 on the app-side veth; then stopped.
#   2. nginx on 198.18.0.1:8080 at C and 1000 connections: /write reads the
#      whole body into memory (the mirror module reads it before the content
#      phase; checked before the runs: $request_body holds the body sent), then
#      answers 204. Then stopped and the address removed (the appliance must
#      own 198.18.0.1 alone).
#   3. The appliance /write (port 8080) at C, 100, 1000 and 10,000 connections
#      with the default ack = "durable", then at C and 1000 with ack = "enqueued".
# Every run: wrk -t 2 -c N -d D --latency with a Lua script posting the same
# 100-line line-protocol body (current timestamps, so VictoriaMetrics keeps them).
# Prints a table (req/s, records/s = 2xx req/s x 100, p50, p99, socket errors,
# non-2xx), the ratios appliance/VictoriaMetrics (records/s), appliance/nginx
# (req/s) and appliance 10,000/100 connections (req/s), and per appliance
# process the frames lost between the veth and DPDK (see FRAMES below).
#
# Usage: sudo scripts/bench-http.sh [--seconds D] [--quick] [--connections C]
#   --seconds D      wrk duration per run (default 10)
#   --quick          3 s runs
#   --connections C  connections for the comparison (default 32)
# Needs root, wrk, curl, ethtool, jq, iproute2, victoria-metrics and nginx
# (missing ones are installed with apt-get: nginx from nginx-light).
#
# Caveat: net_af_packet copies every frame through the kernel on both sides and
# wrk, the kernel and the appliance share the machine's cores, so on a small
# machine this measures function more than speed.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=10
CONNS=32
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
        --quick) SECONDS_PER_RUN=3; shift ;;
        --connections) CONNS=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$SECONDS_PER_RUN$CONNS" in *[!0-9]*) echo "--seconds and --connections take integers" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
# shellcheck source=scripts/lib/veth-bench.sh
. scripts/lib/veth-bench.sh
install_missing wrk:wrk curl:curl ethtool:ethtool jq:jq ip:iproute2 victoria-metrics:victoria-metrics nginx:nginx-light
# 10,000 connections need more than the default 1024 open files (wrk and nginx).
ulimit -n 20000 || { echo "cannot raise the open-files limit to 20000" >&2; exit 1; }
SCALE_CONNS=10000
# FRAMES: AF_PACKET ring size (2 KiB frames, RX and TX each) of the
# appliance's port. DPDK's default of 512 overflows as soon as the polling
# lcore is descheduled for a few milliseconds under many connections; the
# kernel drops into a full ring without DPDK counting it (imissed stays 0) and
# the clients retransmit (1,000 connections: ~90k retransmissions, 2 s
# timeouts). The ring must hold what the clients can have in flight: ~6
# frames (one 7 KiB request) per connection, so 65,536 frames (128 MiB per
# ring) for 10,000 connections.
FRAMES=65536

BIN=target/release/metricsstream
[ -x "$BIN" ] || cargo build --release --bin metricsstream >&2

veth_bench_setup bh  # namespaces, veth, $TMP: removed on exit
LOAD_START=$(uptime | sed 's/.*load average: //')

# --- the load: one 100-line body, a Lua script that reports in one line -----
now=$(date +%s)
for i in $(seq 0 99); do
    printf 'cpu,host=h%d,cpu=c%d usage=%d.5,idle=%di %d%09d\n' $((i % 10)) $((i % 4)) "$i" "$i" "$now" "$i"
done >"$TMP/body.lp"
post_lua "$TMP/body.lp" "Content-Type: text/plain" >"$TMP/post.lua"

# --- 1. VictoriaMetrics on the kernel stack ---------------------------------
ip -n "$APP_NS" addr add "$ADDR/24" dev "$APP_IF"
# `ip netns exec` execs the program, so $! is VictoriaMetrics itself.
ip netns exec "$APP_NS" victoria-metrics -storageDataPath="$TMP/vm" -httpListenAddr="$ADDR:8428" \
    -loggerLevel=ERROR >"$TMP/vm.log" 2>&1 &
VM_PID=$!
wait_http "http://$ADDR:8428/health" 200 || { cat "$TMP/vm.log" >&2; exit 1; }
run_wrk VictoriaMetrics "$CONNS" "http://$ADDR:8428/write"
ip netns exec "$CLI_NS" curl -s -m 30 "http://$ADDR:8428/internal/force_flush" >/dev/null || true
vm_series=$(ip netns exec "$CLI_NS" curl -s -m 30 "http://$ADDR:8428/api/v1/series/count" | jq -r '.data[0] // "?"' || echo "?")
stop_pid "$VM_PID"; VM_PID=""

# --- 2. nginx on the kernel stack: the path's own limit ---------------------
# nginx_conf BODY_LOG: /write reads the whole body into one memory buffer (the
# mirror module reads it in the precontent phase; the content phase then finds
# no file and error_page turns that into 204). A plain `return 204` would not
# read it: it runs earlier and discards the body unread. With BODY_LOG, each
# request's $request_body is logged (the check); without, nothing is logged.
nginx_conf() {
    local log="access_log off;"
    [ -n "$1" ] && log="log_format body '\$status [\$request_body]'; access_log $1 body;"
    cat <<EOF
worker_processes auto;
user root;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 20000; }
http {
    $log
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    server {
        listen $ADDR:8080 backlog=16384;
        root $TMP/nginx/empty;
        location = /ping { return 204; }
        location = /write {
            client_body_buffer_size 1m;
            client_max_body_size 8m;
            client_body_in_single_buffer on;
            mirror /discard;
            mirror_request_body on;
            log_not_found off;
            error_page 404 =204 @done;
        }
        location = /discard { internal; return 204; }
        location @done { return 204; }
    }
}
EOF
}
start_nginx() {  # start_nginx CONF: master + one worker per core, in the app namespace
    ip netns exec "$APP_NS" nginx -c "$1" -g 'daemon off;' >"$TMP/nginx.out" 2>&1 &
    NGINX_PID=$!
    wait_http "http://$ADDR:8080/ping" 204 || { cat "$TMP/nginx.out" "$TMP/nginx/error.log" >&2; exit 1; }
}
mkdir -p "$TMP/nginx/empty"
nginx_conf "$TMP/nginx/body.log" >"$TMP/nginx/check.conf"
nginx_conf "" >"$TMP/nginx/bench.conf"
# The check: one POST of the benchmark body; the log must hold its first line.
start_nginx "$TMP/nginx/check.conf"
ip netns exec "$CLI_NS" curl -sS -m 10 -o /dev/null --data-binary @"$TMP/body.lp" "http://$ADDR:8080/write"
stop_pid "$NGINX_PID"; NGINX_PID=""
if grep -qF "$(head -n 1 "$TMP/body.lp")" "$TMP/nginx/body.log"; then
    NGINX_CHECK="nginx read the bodies: before the runs, its \$request_body log held the body POSTed"
else
    echo "nginx did not read the request body:" >&2; cat "$TMP/nginx/body.log" >&2; exit 1
fi
start_nginx "$TMP/nginx/bench.conf"
for c in $(printf '%s\n' "$CONNS" 1000 | awk '!seen[$1]++'); do
    run_wrk nginx "$c" "http://$ADDR:8080/write"
done
stop_pid "$NGINX_PID"; NGINX_PID=""

ip -n "$APP_NS" addr flush dev "$APP_IF"
ip -n "$CLI_NS" neigh flush dev "$CLI_IF"
if ip -n "$APP_NS" -4 addr show dev "$APP_IF" | grep -q inet; then
    echo "198.18.0.1 is still on the kernel side of $APP_IF" >&2; exit 1
fi

# --- 3. the appliance (owns 198.18.0.1 through net_af_packet) ---------------
veth_rx() { ip -n "$APP_NS" -s -j link show "$APP_IF" | jq '.[0].stats64.rx.packets'; }
# run_appliance ACK LABEL CONNS...: one serve process, one wrk run per CONNS;
# SIGTERM, then records_written from its report vs the 2xx wrk counted, and
# the frames the veth received that DPDK did not.
run_appliance() {
    local ack=$1 label=$2 rc=0 written acked statuses c rx_before rx_after dpdk_rx
    shift 2
    rm -rf "$TMP/data"
    cat >"$TMP/config.toml" <<EOF
[net]
ipv4 = "$ADDR/24"
[http]
max_connections_per_worker = $((SCALE_CONNS + 2048))
[writer]
data_dir = "$TMP/data"
ack = "$ack"
[limits]
default_rate = 1000000000
default_burst = 1000000000
EOF
    rx_before=$(veth_rx)
    ip netns exec "$APP_NS" "$BIN" serve --config "$TMP/config.toml" --stats-interval 0 --report "$TMP/report.json" \
        -- --no-huge -m 1024 --no-shconf --no-pci -l 0-1 --log-level '*:warning' \
        --vdev "net_af_packet0,iface=$APP_IF,framecnt=$FRAMES" >"$TMP/serve.log" 2>&1 &
    APP_PID=$!
    wait_http "http://$ADDR:8080/ping" 204 || { cat "$TMP/serve.log" >&2; exit 1; }
    for c in "$@"; do
        run_wrk "$label" "$c" "http://$ADDR:8080/write"
    done
    kill -TERM "$APP_PID"
    wait "$APP_PID" || rc=$?
    APP_PID=""
    rx_after=$(veth_rx)
    [ "$rc" -eq 0 ] || { echo "serve exited with $rc" >&2; cat "$TMP/serve.log" >&2; }
    written=$(jq -r '.records_written // "?"' "$TMP/report.json" 2>/dev/null || echo "?")
    dpdk_rx=$(jq -r '.rx_packets // 0' "$TMP/report.json" 2>/dev/null || echo 0)
    acked=$(awk -v l="$label" '$1 == l { s += ($8 - $7) * 100 } END { print s + 0 }' "$RESULTS")
    statuses=$(jq -c '.http | with_entries(select(.key | startswith("responses_")))' "$TMP/report.json" 2>/dev/null || echo "?")
    CHECKS+="$label: statuses (report, incl. /ping) $statuses"$'\n'
    CHECKS+="$label: net (report) $(jq -c '.net' "$TMP/report.json" 2>/dev/null || echo "?")"$'\n'
    CHECKS+="$label: records_written (report) $written; 2xx counted by wrk x 100: $acked (writes in flight when wrk stops may add more); serve exit $rc"$'\n'
    CHECKS+="$label: frames the veth received and DPDK did not (AF_PACKET ring drops; frames after serve exited count too): $((rx_after - rx_before - dpdk_rx))"$'\n'
    CHECKS+="$label: at exit: $(grep -E '^worker: ' "$TMP/serve.log" || echo "every connection finished within the drain")"$'\n'
}
CHECKS=""
# The comparison and connection scaling with the default durable acks (a 2xx
# after the fsync that covers the batch; fsync at most every 10 ms)...
# shellcheck disable=SC2046
run_appliance durable appliance $(printf '%s\n' "$CONNS" 100 1000 "$SCALE_CONNS" | awk '!seen[$1]++')
# ...and with ack = "enqueued" (2xx when the batch is handed to the writer),
# like VictoriaMetrics and nginx, which answer before the data is on disk.
# shellcheck disable=SC2046
run_appliance enqueued appliance-enqueued $(printf '%s\n' "$CONNS" 1000 | awk '!seen[$1]++')

# --- table ------------------------------------------------------------------
echo
echo "HTTP /write, wrk -t 2 -d ${SECONDS_PER_RUN}s --latency, 100-line bodies, veth + net_af_packet (framecnt=$FRAMES), $(nproc) cores"
echo "load average (1, 5, 15 min): $LOAD_START at the start, $(uptime | sed 's/.*load average: //') at the end"
echo
echo "records/s = 2xx req/s x 100; socket errors = connect + read + write + timeout (wrk --timeout 2 s)"
echo
echo "| system | connections | req/s | records/s | p50 | p99 | socket errors | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
# records/s counts answered requests that were not errors (wrk's non-2xx are status >= 400).
awk '{ printf "| %s | %d | %d | %d | %.2f ms | %.2f ms | %d | %d |\n", $1, $2, $3, ($8 > 0 ? $3 * ($8 - $7) / $8 * 100 : 0), $4 / 1000, $5 / 1000, $6, $7 }' "$RESULTS"
echo
awk -v c="$CONNS" -v big="$SCALE_CONNS" '
    { ok = $8 > 0 ? $3 * ($8 - $7) / $8 : 0 }
    $1 == "VictoriaMetrics" && $2 == c { vm = ok; vm99 = $5 }
    $1 == "nginx" { ngx[$2] = ok }
    $1 == "appliance" { app[$2] = ok; app99[$2] = $5 }
    $1 == "appliance" && $2 == 100 { a100 = $3 }
    $1 == "appliance" && $2 == big { abig = $3 }
    $1 == "appliance-enqueued" { enq[$2] = ok; enq99[$2] = $5 }
    END {
        if (vm > 0) printf "appliance / VictoriaMetrics (records/s, %d connections): %.2fx, p99 %.1f ms vs %.1f ms (goal: >= 3x with p99 no worse)\n", c, app[c] / vm, app99[c] / 1000, vm99 / 1000
        if (vm > 0 && enq[c] > 0) printf "appliance (ack=enqueued) / VictoriaMetrics (records/s, %d connections): %.2fx, p99 %.1f ms vs %.1f ms\n", c, enq[c] / vm, enq99[c] / 1000, vm99 / 1000
        for (n in ngx) if (ngx[n] > 0) printf "appliance / nginx (2xx req/s, %d connections): %.2fx durable, %.2fx enqueued (goal: >= 0.5)\n", n, app[n] / ngx[n], enq[n] / ngx[n]
        if (a100 > 0) printf "appliance %d / 100 connections (req/s, durable): %.2fx (goal: >= 0.8)\n", big, abig / a100
    }' "$RESULTS"
echo "$NGINX_CHECK"
printf "%s" "$CHECKS"
echo "VictoriaMetrics series after the run: $vm_series"

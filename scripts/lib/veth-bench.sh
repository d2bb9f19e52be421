# shellcheck shell=bash
# Shared by the HTTP benchmarks (bench-http.sh, bench-remote-write.sh): two
# network namespaces joined by a veth pair (removed on exit), a temp dir,
# process stopping, readiness polling and one-line wrk results.
#
# The sourcing script calls `veth_bench_setup TAG` (TAG: part of the
# namespace names). Afterwards: APP_NS CLI_NS APP_IF CLI_IF ADDR TMP RESULTS,
# and VM_PID NGINX_PID APP_PID (set them to stop those processes on exit).

stop_pid() {  # stop_pid PID: SIGTERM, wait up to 30 s, then SIGKILL
    local pid=$1 _
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && { echo "PID $pid ignored SIGTERM, killing" >&2; kill -KILL "$pid" 2>/dev/null || true; }
    wait "$pid" 2>/dev/null || true
}

veth_bench_cleanup() {
    [ -n "$VM_PID" ] && stop_pid "$VM_PID"
    [ -n "$NGINX_PID" ] && stop_pid "$NGINX_PID"
    [ -n "$APP_PID" ] && stop_pid "$APP_PID"
    ip netns del "$APP_NS" 2>/dev/null || true
    ip netns del "$CLI_NS" 2>/dev/null || true
    rm -rf "$TMP"
}

# shellcheck disable=SC2034  # the variables are the sourcing script's
veth_bench_setup() {
    local tag=$1 id=$(( $$ % 100000 ))
    APP_NS="msa-$tag-$id" CLI_NS="msc-$tag-$id" APP_IF="vba$id" CLI_IF="vbc$id"
    ADDR=198.18.0.1
    TMP=$(mktemp -d "/tmp/bench-$tag.XXXXXX")
    VM_PID="" APP_PID="" NGINX_PID=""
    RESULTS="$TMP/results"
    : >"$RESULTS"
    trap veth_bench_cleanup EXIT
    trap 'exit 130' INT TERM
    ip netns add "$APP_NS"
    ip netns add "$CLI_NS"
    ip link add "$APP_IF" type veth peer name "$CLI_IF"
    ip link set "$APP_IF" netns "$APP_NS"
    ip link set "$CLI_IF" netns "$CLI_NS"
    # No IPv6 on the app end: the kernel then sends nothing there on its own, so
    # veth RX packets - DPDK rx_packets = frames lost in the AF_PACKET ring.
    ip netns exec "$APP_NS" sysctl -qw "net.ipv6.conf.$APP_IF.disable_ipv6=1"
    ip -n "$APP_NS" link set "$APP_IF" up
    ip -n "$APP_NS" link set lo up
    ip -n "$CLI_NS" link set "$CLI_IF" up
    ip -n "$CLI_NS" link set lo up
    ip -n "$CLI_NS" addr add 198.18.0.2/24 dev "$CLI_IF"
    # veth leaves TCP checksums to "offload"; af_packet would receive them unfilled.
    ip netns exec "$CLI_NS" ethtool -K "$CLI_IF" tx off >/dev/null
}

# post_lua BODY_FILE HEADER... : a wrk script POSTing the file's bytes with
# the given "Name: value" headers, reporting in one RESULT line.
post_lua() {
    local body=$1 h
    shift
    printf 'wrk.method = "POST"\n'
    for h in "$@"; do
        printf 'wrk.headers["%s"] = "%s"\n' "${h%%: *}" "${h#*: }"
    done
    printf 'local f = assert(io.open("%s", "rb"))\nwrk.body = f:read("*a")\nf:close()\n' "$body"
    cat <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d timeout=%d non2xx=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status))
end
LUA
}

field() { sed -n "s/.* $2=\([0-9]*\).*/\1/p" <<<"$1"; }  # field LINE KEY
# run_wrk SYSTEM CONNS URL [LUA]: one wrk run of SECONDS_PER_RUN (default
# script $TMP/post.lua); appends "system conns rps p50_us p99_us sockerr non2xx requests" to $RESULTS.
run_wrk() {
    local system=$1 c=$2 url=$3 lua=${4:-$TMP/post.lua} out line
    # Let the previous run's connections close first.
    sleep 2
    out=$(ip netns exec "$CLI_NS" timeout $((SECONDS_PER_RUN + 120)) \
        wrk -t 2 -c "$c" -d "${SECONDS_PER_RUN}s" --latency -s "$lua" "$url" 2>&1) || {
        echo "wrk failed for $system c=$c: $out" >&2; return 1; }
    echo "--- $system, $c connections" >&2
    echo "$out" >&2
    line=$(grep '^RESULT ' <<<"$out") || { echo "no RESULT line from wrk" >&2; return 1; }
    awk -v s="$system" -v c="$c" -v n="$(field "$line" requests)" -v d="$(field "$line" duration_us)" \
        -v p50="$(field "$line" p50_us)" -v p99="$(field "$line" p99_us)" \
        -v se="$(( $(field "$line" connect) + $(field "$line" read) + $(field "$line" write) + $(field "$line" timeout) ))" -v bad="$(field "$line" non2xx)" \
        'BEGIN { printf "%s %s %.0f %d %d %d %d %d\n", s, c, n / (d / 1e6), p50, p99, se, bad, n }' >>"$RESULTS"
}

wait_http() {  # wait_http URL CODE: poll from the client namespace, up to 30 s
    local _ code
    for _ in $(seq 1 150); do
        code=$(ip netns exec "$CLI_NS" curl -s -o /dev/null -w '%{http_code}' -m 1 "$1" || true)
        [ "$code" = "$2" ] && return 0
        sleep 0.2
    done
    echo "no $2 from $1 after 30 s (last: $code)" >&2
    return 1
}

# install_missing CMD:PACKAGE...: apt-get install the packages whose command is missing.
install_missing() {
    local pair missing=""
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=" ${pair#*:}"
    done
    [ -z "$missing" ] && return 0
    echo "installing:$missing" >&2
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2; }
}

#!/usr/bin/env bash
# One-run benchmark report: every comparison of issue #6 measured side by side
# on this machine, in one run, each against its peer measured in that run:
#   replay      testpmd rxonly vs `replay` (classify) and the UDP pipeline
#               (parse, limit, write) on the same pcap and core (scripts/bench-replay.sh)
#   loadgen     HTTP in-process: `metricsstream bench` (serve's worker and loadgen's on
#               two ports joined by rings) at 100 and 10,000 connections, req/s per worker
#   wrk         HTTP over veth: the appliance vs VictoriaMetrics (and whatever other peers
#               it runs) fed the same body by the same wrk (scripts/bench-http.sh; root)
#   limiter     our CAS token bucket vs governor (cargo bench --bench limiter)
#   writer      the segment writer vs dd, same bytes, same disk (scripts/bench-writer.sh)
# Writes bench/results/<UTC date-time>.json, bench/results/latest.md (tables) and
# bench/results/latest.svg (chart, `metricsstream bench-report`).
#
# Usage: sudo scripts/bench.sh [--quick] [--out DIR] [--skip LIST]
#   --quick      smoke run: short durations, one round each (figures not for quoting)
#   --out DIR    results directory (default bench/results)
#   --skip LIST  comma-separated parts to leave out: replay,loadgen,wrk,limiter,writer
# A part that cannot run (missing tool, no root) is recorded as skipped with the
# reason, never as a result. Note the load average printed with the figures: the
# machine is shared and busy-polling workers need their cores.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0 OUT=bench/results SKIP=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        --skip) SKIP=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
for part in ${SKIP//,/ }; do
    case "$part" in replay|loadgen|wrk|limiter|writer) ;; *) echo "--skip: unknown part $part" >&2; exit 2 ;; esac
done

[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet --bin metricsstream
BIN=target/release/metricsstream
TMP=$(mktemp -d /tmp/bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT+dirty"

skipping() { [[ ",$SKIP," == *",$1,"* ]]; }
step() { printf '\n== %s (load average %s)\n' "$*" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2; }
# skip_part NAME REASON: records why a part has no figures.
skip_part() { printf '%s\n' "$2" >"$TMP/$1.skipped"; echo "skipped $1: $2" >&2; }

if [ "$QUICK" = 1 ]; then
    REPLAY_ARGS=(--seconds 4 --rounds 1) LOADGEN_S=2 WRK_ARGS=(--quick) WRITER_ENV=(RUNS=1 RECORDS=2000000)
else
    REPLAY_ARGS=(--seconds 5 --rounds 3) LOADGEN_S=10 WRK_ARGS=(--seconds 10) WRITER_ENV=(RUNS=3)
fi

# --- replay: testpmd rxonly vs replay and the UDP pipeline --------------------
if skipping replay; then skip_part replay "--skip"
elif ! command -v dpdk-testpmd >/dev/null; then skip_part replay "dpdk-testpmd missing (package dpdk-dev)"
else
    step "replay vs testpmd (scripts/bench-replay.sh ${REPLAY_ARGS[*]})"
    bash scripts/bench-replay.sh "${REPLAY_ARGS[@]}" --json "$TMP/replay.json" >&2 \
        || skip_part replay "scripts/bench-replay.sh failed (see its output above)"
fi

# --- loadgen: in-process HTTP at 100 and 10,000 connections -------------------
# One 100-line body with current timestamps (as scripts/bench-http.sh sends).
now=$(date +%s)
for i in $(seq 0 99); do
    printf 'cpu,host=h%d,cpu=c%d usage=%d.5,idle=%di %d%09d\n' $((i % 10)) $((i % 4)) "$i" "$i" "$now" "$i"
done >"$TMP/body.lp"
if skipping loadgen; then skip_part loadgen "--skip"
else
    for ack in enqueued durable; do
        for conns in 100 10000; do
            # Durable acks are fsync-bound, not worker-bound: measured at 100 connections only.
            [ "$ack" = durable ] && [ "$conns" != 100 ] && continue
            step "loadgen -> serve in-process (ring pair), ack=$ack, $conns connections, ${LOADGEN_S}s"
            rm -rf "$TMP/data"
            cat >"$TMP/serve.toml" <<EOF
[net]
ipv4 = "198.18.0.1/24"
tcp_rx_buffer = 16384
[http]
max_connections_per_worker = 16384
[writer]
data_dir = "$TMP/data"
ack = "$ack"
[limits]
default_rate = 1000000000
default_burst = 1000000000
EOF
            # A closed loop at 10,000 connections has ~connections / rate seconds of latency
            # by Little's law: a 2 s timeout would abort healthy requests.
            if timeout $((LOADGEN_S + 120)) "$BIN" bench --config "$TMP/serve.toml" --body "$TMP/body.lp" \
                --connections "$conns" --duration "$LOADGEN_S" --timeout-ms 30000 --stats-interval 0 \
                --report "$TMP/loadgen-$ack-$conns.json" >&2; then :
            else
                skip_part "loadgen-$ack-$conns" "metricsstream bench exited with $? (see above)"
            fi
        done
    done
fi

# --- wrk over veth: the appliance vs VictoriaMetrics (and other peers) --------
if skipping wrk; then skip_part wrk "--skip"
elif [ "$(id -u)" -ne 0 ]; then skip_part wrk "needs root (network namespaces)"
else
    missing=""
    for tool in wrk curl ethtool jq ip victoria-metrics; do command -v "$tool" >/dev/null || missing+=" $tool"; done
    if [ -n "$missing" ]; then skip_part wrk "missing:$missing"
    else
        step "wrk over veth (scripts/bench-http.sh ${WRK_ARGS[*]})"
        if bash scripts/bench-http.sh "${WRK_ARGS[@]}" >"$TMP/wrk.txt" 2>"$TMP/wrk.err"; then
            cat "$TMP/wrk.txt" >&2
        else
            tail -n 30 "$TMP/wrk.err" >&2
            skip_part wrk "scripts/bench-http.sh failed (its stderr is above)"
        fi
    fi
fi

# --- limiter vs governor -------------------------------------------------------
if skipping limiter; then skip_part limiter "--skip"
else
    step "limiter vs governor (cargo bench --bench limiter)"
    if cargo bench --quiet --bench limiter >"$TMP/limiter.txt" 2>"$TMP/limiter.err"; then
        grep -E '^\| (10k uniform \(cap 65536\)|1M Zipf\(1.0\) \(cap 2\^21\)) ' "$TMP/limiter.txt" >&2 || true
    else
        tail -n 20 "$TMP/limiter.err" >&2
        skip_part limiter "cargo bench --bench limiter failed"
    fi
fi

# --- writer vs dd ----------------------------------------------------------------
if skipping writer; then skip_part writer "--skip"
else
    step "writer vs dd (${WRITER_ENV[*]} scripts/bench-writer.sh)"
    if env "${WRITER_ENV[@]}" bash scripts/bench-writer.sh >"$TMP/writer.txt" 2>"$TMP/writer.err"; then
        cat "$TMP/writer.txt" >&2
    else
        tail -n 20 "$TMP/writer.err" >&2
        skip_part writer "scripts/bench-writer.sh failed"
    fi
fi

# --- one JSON, the table and the chart --------------------------------------------
LOAD_END=$(cut -d' ' -f1 /proc/loadavg)
JSON="$OUT/$STAMP.json"
python3 - "$TMP" "$JSON" "$STAMP" "$COMMIT" "$(nproc)" "$LOAD_START" "$LOAD_END" "$QUICK" <<'PY'
import json, os, re, sys

tmp, out, stamp, commit, nproc, load_start, load_end, quick = sys.argv[1:9]
def path(name): return os.path.join(tmp, name)
def skipped(name):
    p = path(name + ".skipped")
    return open(p).read().strip() if os.path.exists(p) else None
def load(name):
    p = path(name)
    return json.load(open(p)) if os.path.exists(p) else None

comparisons, http, notes, raw = [], [], [], {}
def compare(name, unit, ours_label, ours, peer_label, peer, goal=None, note="", skip=None):
    c = {"name": name, "unit": unit, "ours_label": ours_label, "ours": ours, "peer_label": peer_label,
         "peer": peer, "goal": goal, "note": note}
    if not skip and (ours is None or peer is None):
        skip = "no figure in the output"
    if not skip and not peer > 0:
        skip = f"the peer measured {peer} {unit} (run too short, or it failed)"
    if skip:
        c.update(ours=None, peer=None, skipped=skip)
    comparisons.append(c)

# replay
r = load("replay.json"); why = skipped("replay")
raw["replay"] = r
compare("UDP pipeline vs testpmd rxonly", "Mpps", "replay --config: parse, limit, write", r and r.get("pipeline_mpps"),
        "dpdk-testpmd rxonly", r and r.get("testpmd_mpps"), 0.5, "same pcap, vdev and core; tags sorted as clients send", why)
compare("UDP pipeline, unsorted tags (worst case) vs testpmd rxonly", "Mpps", "replay --config, every line canonicalised",
        r and r.get("pipeline_unsorted_tags_mpps"), "dpdk-testpmd rxonly", r and r.get("testpmd_mpps"), 0.5,
        "same load with its tags unsorted", why)
compare("replay (classify) vs testpmd rxonly", "Mpps", "replay", r and r.get("replay_mpps"),
        "dpdk-testpmd rxonly", r and r.get("testpmd_mpps"), 0.8, "same pcap, vdev and core", why)

# loadgen (in-process)
lg = {}
for ack in ("enqueued", "durable"):
    for conns in (100, 10000):
        rep = load(f"loadgen-{ack}-{conns}.json")
        if not rep:
            continue
        raw[f"loadgen_{ack}_{conns}"] = rep
        l = rep["loadgen"]
        lg[(ack, conns)] = l["requests_per_s"]
        http.append({"system": f"serve ack={ack}", "client": "loadgen (ring pair)",
                     "connections": conns, "req_per_s": l["requests_per_s"], "records_per_s": l["records_2xx_per_s"],
                     "p50_ms": l["latency"]["p50_us"] / 1000, "p99_ms": l["latency"]["p99_us"] / 1000,
                     "socket_errors": l["socket_errors"],
                     "non_2xx": l["http"]["responses"] - l["http"]["status_2xx"]})
        if "busy_fraction" in l:
            b = l["busy_fraction"]
            why_rate = ("the serve side or the shared CPUs set the rate" if b < 0.8
                        else "loadgen itself may be the limit")
            notes.append(f"loadgen's worker was busy {b:.0%} of the time at {conns} connections (ack={ack}): {why_rate}.")
why = skipped("loadgen")
compare("in-process HTTP req/s per worker: 10,000 vs 100 connections", "req/s", "10,000 connections",
        lg.get(("enqueued", 10000)), "100 connections", lg.get(("enqueued", 100)), 0.8,
        "loadgen and serve on one ring pair, ack=enqueued", why or skipped("loadgen-enqueued-10000") or skipped("loadgen-enqueued-100"))

# wrk over veth: bench-http.sh's Markdown table rows
why = skipped("wrk")
rows = []
if not why and os.path.exists(path("wrk.txt")):
    for line in open(path("wrk.txt")):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[1].isdigit():
            ms = lambda s: float(s.split()[0]) if s.split() and re.match(r"^[0-9.]+$", s.split()[0]) else None
            rows.append({"system": cells[0], "client": "wrk (veth)", "connections": int(cells[1]),
                         "req_per_s": float(cells[2]), "records_per_s": float(cells[3]), "p50_ms": ms(cells[4]),
                         "p99_ms": ms(cells[5]), "socket_errors": int(cells[6]), "non_2xx": int(cells[7])})
    raw["wrk_table"] = rows
    notes.extend(l.strip() for l in open(path("wrk.txt")) if re.search(r"(/|ratio).*x$", l.strip()))
http.extend(rows)
def row(system, conns=None, prefix=False):
    m = [x for x in rows if (x["system"].startswith(system) if prefix else x["system"] == system)
         and (conns is None or x["connections"] == conns)]
    return m[0] if m else None
vm = row("VictoriaMetrics", prefix=True)
c = vm["connections"] if vm else None
for system, label in (("appliance", "serve, ack=durable"), ("appliance-enqueued", "serve, ack=enqueued")):
    a = row(system, c)
    compare(f"HTTP records/s vs VictoriaMetrics ({label})", "records/s", label, a and a["records_per_s"],
            "VictoriaMetrics", vm and vm["records_per_s"], 3.0, f"same wrk, same body, veth, {c} connections" if c else "same wrk, same body, veth",
            why or (None if a and vm else "row missing in bench-http.sh output"))
ng = row("nginx", prefix=True)
if ng or why:
    a = row("appliance", ng["connections"]) if ng else None
    compare("HTTP req/s vs nginx (204, body discarded)", "req/s", "serve, ack=durable", a and a["req_per_s"],
            "nginx", ng and ng["req_per_s"], 0.5, "same wrk, veth", why or (None if a else "no appliance row at nginx's connections"))

# limiter: ns/decision from the table -> M decisions/s per thread
why = skipped("limiter")
lim = {}
if not why and os.path.exists(path("limiter.txt")):
    for line in open(path("limiter.txt")):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[1].isdigit():
            try:
                lim[(cells[0], int(cells[1]))] = (float(cells[2]), float(cells[4]))
            except ValueError:
                pass
    raw["limiter_ns_per_decision"] = {f"{k[0]} x{k[1]}": v for k, v in lim.items()}
for keys, threads in (("10k uniform (cap 65536)", 1), ("1M Zipf(1.0) (cap 2^21)", 2)):
    v = lim.get((keys, threads))
    compare(f"limiter vs governor, {keys.split(' (')[0]} keys, {threads} thread(s)", "M decisions/s per thread",
            "CAS token bucket", v and 1000 / v[0], "governor keyed", v and 1000 / v[1], None,
            "per-thread CPU time", why or (None if v else "row missing in the limiter bench output"))

# writer vs dd
why = skipped("writer")
w = d = None
if not why and os.path.exists(path("writer.txt")):
    t = open(path("writer.txt")).read()
    m = re.search(r"writer: records_per_sec=([0-9.]+) mb_per_sec=([0-9.]+)", t)
    n = re.search(r"dd:\s+mb_per_sec=([0-9.]+)", t)
    if m and n:
        w, d = float(m.group(2)), float(n.group(1))
        raw["writer"] = {"records_per_s": float(m.group(1)), "mb_per_s": w, "dd_mb_per_s": d}
compare("durable writer vs dd", "MB/s", "segment writer, ack=durable", w, "dd conv=fdatasync", d, 0.8,
        "same bytes, same disk", why)

run = {"date": stamp, "commit": commit, "nproc": int(nproc), "load_start": load_start, "load_end": load_end,
       "quick": quick == "1", "comparisons": comparisons, "http": http, "notes": notes, "raw": raw}
json.dump(run, open(out, "w"), indent=1)
PY
"$BIN" bench-report --input "$JSON" --markdown "$OUT/latest.md" --svg "$OUT/latest.svg"
cat "$OUT/latest.md"
echo
echo "wrote $JSON, $OUT/latest.md, $OUT/latest.svg (load average at start $LOAD_START, at end $LOAD_END)"

#!/usr/bin/env bash
# Freshness benchmark (issue 3; docs/benchmarks.md): `firn ingest` as a service (static
# assignment, commit.interval = 1s) while bench/steady_producer.py produces Debezium JSON at a
# steady RATE for SECONDS, each event stamped with its produce time as source time. Afterwards
# bench/freshness_report.py computes, for every bronze row, (commit time of the snapshot that
# made it visible) − (produce time): p50/p90/p99/max. Target: p99 ≤ commit interval + 1 s.
#
# Env: RATE (messages/s, default 10000), DURATION (seconds, default 60), INTERVAL (default 1s),
#      OUT (results dir), FIRN_BIN (skip the build).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RATE="${RATE:-10000}"
SECONDS_="${DURATION:-60}"
INTERVAL="${INTERVAL:-1s}"
OUT="${OUT:-/tmp/firn-bench/freshness-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT/broker" "$OUT/firn"
OUT="$(cd "$OUT" && pwd)"

build_release
bench_python
FIRN_PID=""
cleanup() {
    if [ -n "$FIRN_PID" ]; then stop_pid "$FIRN_PID"; fi
    if [ -n "${TANSU_PID:-}" ]; then stop_pid "$TANSU_PID"; fi
}
trap cleanup EXIT
start_tansu "$OUT/broker"

need=$((RATE * SECONDS_))
# About 3,000 messages per unit of scale with the default three tenants.
scale=$(( need / 2800 + 1 ))
log "firn gen --out (scale $scale, at least $need messages)"
"$FIRN" gen --out "$OUT/events.jsonl" --schemas without --scale "$scale" >/dev/null 2>&1
"$PY" "$repo_root/bench/steady_producer.py" --brokers "$BROKERS" --events "$OUT/events.jsonl" \
    --rate "$RATE" --seconds "$SECONDS_" --create-only >/dev/null

admin_port="$(free_port)"
write_firn_config "$OUT/firn/firn.toml" "$BROKERS" "$INTERVAL" 'assignment = "static"'
printf '[admin]\nlisten = "127.0.0.1:%s"\n' "$admin_port" >>"$OUT/firn/firn.toml"
log "firn ingest (service, commit.interval = $INTERVAL)"
/usr/bin/time -v -o "$OUT/firn.time" "$FIRN" --config "$OUT/firn/firn.toml" ingest \
    >"$OUT/firn.out" 2>"$OUT/firn.err" &
FIRN_PID=$!
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null || { log "firn never became ready"; tail "$OUT/firn.err" >&2; exit 1; }

log "producing $RATE messages/s for ${SECONDS_}s"
"$PY" "$repo_root/bench/steady_producer.py" --brokers "$BROKERS" --events "$OUT/events.jsonl" \
    --rate "$RATE" --seconds "$SECONDS_" | tee "$OUT/producer.json" >&2
sleep 5
# The commit-duration histogram and counters, to tell commit time from waiting.
curl -sf "http://127.0.0.1:$admin_port/metrics" >"$OUT/metrics.txt" || true
# SIGTERM to firn itself (the child of /usr/bin/time), which commits what it read and exits.
kill -TERM "$(pgrep -P "$FIRN_PID")"
wait "$FIRN_PID" || true
FIRN_PID=""
log "firn: $(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} /Maximum resident/ {r=$2} END {printf "cpu %.1fs, peak RSS %d MiB", u+s, r/1024}' "$OUT/firn.time")"
"$PY" "$repo_root/bench/freshness_report.py" "$OUT/firn/warehouse" | tee "$OUT/freshness.json"
log "results in $OUT"

#!/usr/bin/env bash
# Ingest benchmark (issue 3; results and method in docs/benchmarks.md). One run, same machine,
# same pre-produced topics, back to back:
#   1. a real broker (tansu, in-memory storage) and `firn gen` producing the backlog;
#   2. `firn ingest --once` (release build) reads every partition into bronze;
#   3. bench/python_ingest.py (confluent-kafka + pyiceberg append, same decode, dedup and
#      commit interval) reads the first PY_EVENTS messages of the same topics into its own
#      warehouse.
# Reports wall time, CPU time (user + sys), events/s per CPU-second and peak RSS of both, and
# their ratio, as a Markdown table on stdout and in $OUT/ingest.md.
#
# Env: SCALE (generator --scale; 330 ≈ 1M messages with 3 tenants, 3300 ≈ 10M), SCHEMAS
#      (without | with | mixed; `without` keeps 10M messages within the broker's RAM),
#      PARTITIONS (per topic), PY_EVENTS (Python prefix; 0 = all), COMMIT_INTERVAL (both),
#      OUT (results dir), FIRN_BIN (skip the build and use this binary).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCALE="${SCALE:-330}"
SCHEMAS="${SCHEMAS:-without}"
PARTITIONS="${PARTITIONS:-2}"
PY_EVENTS="${PY_EVENTS:-200000}"
COMMIT_INTERVAL="${COMMIT_INTERVAL:-10s}"
OUT="${OUT:-/tmp/firn-bench/ingest-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

build_release
bench_python
cleanup() { if [ -n "${TANSU_PID:-}" ]; then stop_pid "$TANSU_PID"; fi; }
trap cleanup EXIT

mkdir -p "$OUT/broker" "$OUT/firn" "$OUT/python"
start_tansu "$OUT/broker"
log "tansu at $BROKERS"

log "firn gen --scale $SCALE --schemas $SCHEMAS --partitions $PARTITIONS"
measure gen "$FIRN" --json gen --brokers "$BROKERS" --scale "$SCALE" --schemas "$SCHEMAS" \
    --partitions "$PARTITIONS"
MESSAGES="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["sink"]["messages"])' "$OUT/gen.out")"
log "produced $MESSAGES messages; broker RSS $(( $(rss_kib "$TANSU_PID") / 1024 )) MiB"

write_firn_config "$OUT/firn/firn.toml" "$BROKERS" "$COMMIT_INTERVAL"

log "firn ingest --once (all $MESSAGES messages)"
measure firn "$FIRN" --config "$OUT/firn/firn.toml" --json ingest --once
FIRN_WALL=$WALL FIRN_CPU=$CPU FIRN_RSS=$RSS_MIB
FIRN_EVENTS="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["records_consumed"])' "$OUT/firn.out")"
[ "$FIRN_EVENTS" = "$MESSAGES" ] || { log "firn consumed $FIRN_EVENTS of $MESSAGES messages"; exit 1; }

interval_s="$("$PY" -c 'import sys; v=sys.argv[1]; print(float(v[:-1]) * (60 if v.endswith("m") else 1))' "$COMMIT_INTERVAL")"
log "python_ingest.py (first $PY_EVENTS messages; 0 = all)"
measure python "$PY" "$repo_root/bench/python_ingest.py" --brokers "$BROKERS" \
    --warehouse "$OUT/python" --max-events "$PY_EVENTS" --commit-interval "$interval_s"
PY_WALL=$WALL PY_CPU=$CPU PY_RSS=$RSS_MIB
PY_DONE="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["records_consumed"])' "$OUT/python.out")"

"$PY" - "$OUT" "$MESSAGES" "$SCHEMAS" "$FIRN_EVENTS" "$FIRN_WALL" "$FIRN_CPU" "$FIRN_RSS" \
    "$PY_DONE" "$PY_WALL" "$PY_CPU" "$PY_RSS" <<'EOF' | tee "$OUT/ingest.md"
import json, sys
out, messages, schemas = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fe, fw, fc, fr, pe, pw, pc, pr = sys.argv[4:12]
fe, pe = int(fe), int(pe)
fw, fc, pw, pc = map(float, (fw, fc, pw, pc))
firn = json.load(open(f"{out}/firn.out"))
py = json.load(open(f"{out}/python.out"))
f_core, p_core = fe / fc, pe / pc
print(f"backlog: {messages} Debezium JSON messages (schemas: {schemas}); firn wrote "
      f"{sum(t['rows_written'] for t in firn['tables'].values())} bronze rows "
      f"({firn['tombstones']} tombstones, {firn['duplicates_dropped']} re-emissions dropped); "
      f"python wrote {py['rows_written']} rows of its {pe}-message prefix")
print()
print("| consumer | messages | wall s | CPU s (user+sys) | events/s (wall) | events/s per core | peak RSS MiB |")
print("|---|---:|---:|---:|---:|---:|---:|")
print(f"| firn ingest --once | {fe} | {fw:.1f} | {fc:.1f} | {fe / fw:,.0f} | {f_core:,.0f} | {fr} |")
print(f"| python (confluent-kafka + pyiceberg) | {pe} | {pw:.1f} | {pc:.1f} | {pe / pw:,.0f} | {p_core:,.0f} | {pr} |")
print()
print(f"firn / python, events/s per core: {f_core / p_core:.1f}x")
EOF
log "results in $OUT"

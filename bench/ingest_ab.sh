#!/usr/bin/env bash
# Two firn builds on one backlog (docs/benchmarks.md, "Before and after"): a tansu broker,
# one `firn gen` backlog, then `firn ingest --once` of build A and build B alternately, ROUNDS
# times each, every run into a fresh warehouse (so each reads the whole backlog). Reports the
# wall time, CPU time and peak RSS of every run and the ratio of the median CPU times, as a
# Markdown table on stdout and in $OUT/ab.md.
#
# Env: FIRN_A, FIRN_B (binaries; required), SCALE (330 ≈ 1M messages), SCHEMAS (without |
#      with | mixed), PARTITIONS, ROUNDS (2), COMMIT_INTERVAL (10s), OUT (results dir).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${FIRN_A:?set FIRN_A to the first firn binary}"
: "${FIRN_B:?set FIRN_B to the second firn binary}"
SCALE="${SCALE:-330}"
SCHEMAS="${SCHEMAS:-without}"
PARTITIONS="${PARTITIONS:-2}"
ROUNDS="${ROUNDS:-2}"
COMMIT_INTERVAL="${COMMIT_INTERVAL:-10s}"
OUT="${OUT:-/tmp/firn-bench/ingest-ab-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT/broker"
OUT="$(cd "$OUT" && pwd)"

bench_python
cleanup() { if [ -n "${TANSU_PID:-}" ]; then stop_pid "$TANSU_PID"; fi; }
trap cleanup EXIT
start_tansu "$OUT/broker"
log "firn gen --scale $SCALE --schemas $SCHEMAS --partitions $PARTITIONS (tansu at $BROKERS)"
measure gen "$FIRN_A" --json gen --brokers "$BROKERS" --scale "$SCALE" --schemas "$SCHEMAS" \
    --partitions "$PARTITIONS"
MESSAGES="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["sink"]["messages"])' "$OUT/gen.out")"

results="$OUT/runs.tsv"
: >"$results"
for round in $(seq "$ROUNDS"); do
    for build in A B; do
        bin_var="FIRN_$build"
        dir="$OUT/$build-$round"
        mkdir -p "$dir"
        write_firn_config "$dir/firn.toml" "$BROKERS" "$COMMIT_INTERVAL"
        log "round $round, build $build: firn ingest --once"
        measure "$build-$round" "${!bin_var}" --config "$dir/firn.toml" --json ingest --once
        consumed="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["records_consumed"])' "$OUT/$build-$round.out")"
        [ "$consumed" = "$MESSAGES" ] || { log "build $build consumed $consumed of $MESSAGES"; exit 1; }
        printf '%s\t%s\t%s\t%s\t%s\n' "$build" "$round" "$WALL" "$CPU" "$RSS_MIB" >>"$results"
    done
done

"$PY" - "$results" "$MESSAGES" "$SCHEMAS" "$FIRN_A" "$FIRN_B" <<'PY' | tee "$OUT/ab.md"
import statistics, sys
path, messages, schemas, a, b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
runs = [line.split("\t") for line in open(path).read().splitlines()]
print(f"{messages:,} messages ({schemas} schemas); A = `{a}`, B = `{b}`\n")
print("| build | round | wall s | CPU s | events/s per CPU-second | peak RSS MiB |")
print("|---|---|---|---|---|---|")
cpu = {"A": [], "B": []}
for build, round_, wall, cpu_s, rss in runs:
    cpu[build].append(float(cpu_s))
    print(f"| {build} | {round_} | {wall} | {cpu_s} | {messages / float(cpu_s):,.0f} | {rss} |")
ma, mb = statistics.median(cpu["A"]), statistics.median(cpu["B"])
print(f"\nmedian CPU: A {ma:.2f} s, B {mb:.2f} s; B uses {mb / ma:.2f}x A's CPU time "
      f"({messages / mb:,.0f} vs {messages / ma:,.0f} events/s per CPU-second)")
PY

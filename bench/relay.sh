#!/usr/bin/env bash
# Relay benchmark (issue 5; results and method in docs/benchmarks.md). Two phases, each on its
# own broker, test server and ledger:
#   throughput: `firn gen` pre-produces a backlog to a real broker (tansu, in-memory storage);
#       `starrocks-test-server` runs standalone with the hot table `firn_hot.order_facts`;
#       `firn relay --once` (release build) relays the backlog, measured with /usr/bin/time -v.
#       Hot rows loaded per CPU-second of the relay process; checks: every label VISIBLE once,
#       the visible txns' rows add up to the relay's report, the hot table holds exactly the
#       live orders of the generator's expected final state.
#   latency: `firn relay` runs as a service (static assignment, interval 1s) while
#       bench/steady_producer.py produces the relay's input topics (orders, order_items) at a
#       steady RATE for DURATION seconds, each event stamped with its produce time. Then
#       bench/relay_report.py computes event-to-visible latency two ways: per hot row
#       (the test server's visible time of the row's label − the row's relay_version, i.e.
#       the produce time of the key's newest event) and per event from the relay's
#       `firn_relay_event_to_visible_seconds` histogram (50 ms buckets).
# Targets: ≥ 100,000 hot rows/s per core; p99 event-to-visible ≤ 1.5 s at 10,000 events/s.
#
# Env: PHASES (throughput,latency), SCALE (generator --scale of the backlog; 100 ≈ 300k
#      messages, of which the relay reads orders and order_items), SCHEMAS (mixed | with |
#      without; the relay needs typed decimals, so not `without` alone), PARTITIONS,
#      MAX_BATCH_ROWS (relay.max-batch-rows of the throughput run), RATE, DURATION, INTERVAL
#      (latency run), FETCH_WAIT_MS (librdkafka fetch.wait.max.ms of both; unset: 500), OUT (results dir), FIRN_BIN / SERVER_BIN (skip the build), PERF=1
#      (record the throughput run with `perf record -F 499 -g`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PHASES="${PHASES:-throughput,latency}"
SCALE="${SCALE:-100}"
SCHEMAS="${SCHEMAS:-mixed}"
PARTITIONS="${PARTITIONS:-2}"
MAX_BATCH_ROWS="${MAX_BATCH_ROWS:-500000}"
RATE="${RATE:-10000}"
DURATION="${DURATION:-60}"
INTERVAL="${INTERVAL:-1s}"
FETCH_WAIT_MS="${FETCH_WAIT_MS:-}"
OUT="${OUT:-/tmp/firn-bench/relay-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

build_release
SERVER="${SERVER_BIN:-$(dirname "$FIRN")/starrocks-test-server}"
[ -x "$SERVER" ] || { log "no starrocks-test-server at $SERVER"; exit 1; }
bench_python

RELAY_PID="" SERVER_PID=""
cleanup() {
    if [ -n "$RELAY_PID" ]; then stop_pid "$RELAY_PID"; fi
    if [ -n "$SERVER_PID" ]; then stop_pid "$SERVER_PID"; fi
    if [ -n "${TANSU_PID:-}" ]; then stop_pid "$TANSU_PID"; fi
}
trap cleanup EXIT

# start_server DIR: the standalone test server with the hot table; sets FE and SERVER_PID.
start_server() {
    local dir="$1"
    "$SERVER" >"$dir/server.out" 2>"$dir/server.err" &
    SERVER_PID=$!
    FE=""
    for _ in $(seq 100); do
        FE="$(awk '/^FE / {print $2; exit}' "$dir/server.out")"
        [ -n "$FE" ] && break
        sleep 0.1
    done
    [ -n "$FE" ] || { log "the test server printed no FE address"; exit 1; }
    # The hot table as sql/starrocks/01_hot_tables.sql creates it (ingest/src/relay/test_server.rs).
    curl -sf -X POST "$FE/__fake/tables" -H 'content-type: application/json' -d '{
        "db": "firn_hot", "table": "order_facts", "key": ["tenant", "order_id"],
        "columns": [
            {"name": "tenant", "type": "varchar", "nullable": false},
            {"name": "order_id", "type": "bigint", "nullable": false},
            {"name": "customer_id", "type": "bigint", "nullable": true},
            {"name": "status", "type": "varchar", "nullable": true},
            {"name": "ordered_at", "type": "datetime", "nullable": true},
            {"name": "order_date", "type": "date", "nullable": true},
            {"name": "item_count", "type": "bigint", "nullable": true},
            {"name": "units", "type": "bigint", "nullable": true},
            {"name": "items_total", "type": "decimal", "nullable": true},
            {"name": "order_total", "type": "decimal", "nullable": true},
            {"name": "source_version", "type": "bigint", "nullable": true},
            {"name": "relay_version", "type": "bigint", "nullable": false},
            {"name": "relay_label", "type": "varchar", "nullable": true}]}' >/dev/null
    # Keep every label for the checks (StarRocks keeps 1000 per database by default).
    curl -sf "$FE/__fake/limits" | "$PY" -c '
import json, sys
limits = json.load(sys.stdin)
limits["label_keep_max_num"] = 1_000_000
limits["tablet_max_versions"] = 1_000_000
print(json.dumps(limits))' | curl -sf -X POST "$FE/__fake/limits" -H 'content-type: application/json' -d @- >/dev/null
}

# relay_config FILE BROKERS INTERVAL ADMIN_PORT [RELAY_LINES]
relay_config() {
    write_firn_config "$1" "$2" "$3" 'assignment = "static"'
    cat >>"$1" <<CONFIG
[[gold]]
name = "order_facts"
sql = "$repo_root/sql/gold/order_facts.sql"
key = ["tenant", "order_id"]
partition-by = ["tenant"]
relay = true
relay-keys = { orders = ["tenant", "id"], order_items = ["tenant", "order_id"] }
[relay]
fe-urls = ["$FE"]
database = "firn_hot"
interval = "$3"
${5:-}
[admin]
listen = "127.0.0.1:$4"
CONFIG
    if [ -n "$FETCH_WAIT_MS" ]; then
        printf '[kafka.properties]\n"fetch.wait.max.ms" = "%s"\n' "$FETCH_WAIT_MS" >>"$1"
    fi
}

# collect DIR: what the test server holds, for the report.
collect() {
    curl -sf "$FE/__fake/txns" >"$1/txns.json"
    curl -sf "$FE/__fake/tables/firn_hot/order_facts/rows" >"$1/rows.json"
}

log "machine: $(uptime)"

if [[ ",$PHASES," == *",throughput,"* ]]; then
    dir="$OUT/throughput"
    mkdir -p "$dir/broker" "$dir/relay"
    start_tansu "$dir/broker"
    log "throughput: tansu at $BROKERS; firn gen --scale $SCALE --schemas $SCHEMAS"
    OUT="$dir" measure gen "$FIRN" --json gen --brokers "$BROKERS" --scale "$SCALE" \
        --schemas "$SCHEMAS" --partitions "$PARTITIONS" --expected "$dir/expected"
    start_server "$dir"
    relay_config "$dir/relay/firn.toml" "$BROKERS" "1s" "$(free_port)" "max-batch-rows = $MAX_BATCH_ROWS"
    log "throughput: firn relay --once (test server at $FE); load: $(cut -d' ' -f1-3 /proc/loadavg)"
    uptime >"$dir/uptime.before"
    ps -eo pid,pcpu,etime,args --sort=-pcpu | head -8 | cut -c1-160 >"$dir/ps.before"
    relay=("$FIRN" --config "$dir/relay/firn.toml" --json relay --once)
    if [ "${PERF:-0}" = 1 ]; then
        relay=(perf record -F 499 --call-graph "${PERF_CALL_GRAPH:-fp}" -o "$dir/perf.data" -- "${relay[@]}")
    fi
    (cd "$dir/relay" && OUT="$dir" measure relay "${relay[@]}")
    uptime >"$dir/uptime.after"
    collect "$dir"
    stop_pid "$SERVER_PID"; SERVER_PID=""
    stop_pid "$TANSU_PID"; TANSU_PID=""
    "$PY" "$repo_root/bench/relay_report.py" throughput "$dir" | tee "$dir/report.json"
fi

if [[ ",$PHASES," == *",latency,"* ]]; then
    dir="$OUT/latency"
    mkdir -p "$dir/broker" "$dir/relay"
    start_tansu "$dir/broker"
    need=$((RATE * DURATION))
    # About 3,000 messages per unit of scale, 2,500 of them orders and order items.
    scale=$(( need / 2400 + 1 ))
    # Schemaless events (a tenth of the size of schema-embedded ones, so the producer keeps
    # the rate), after a warm-up of schema-embedded ones: the relay types a column from the
    # first embedded schema and coerces schemaless values to it, as bronze does.
    log "latency: firn gen --out (scale $scale, schemaless), keeping the orders and order_items messages"
    "$FIRN" gen --out "$dir/warmup-all.jsonl" --schemas with --scale 1 >/dev/null 2>&1
    grep -E '"topic":"[^"]*\.(orders|order_items)"' "$dir/warmup-all.jsonl" >"$dir/warmup.jsonl"
    "$FIRN" gen --out "$dir/all.jsonl" --schemas without --scale "$scale" --seed 7 >/dev/null 2>&1
    grep -m "$need" -E '"topic":"[^"]*\.(orders|order_items)"' "$dir/all.jsonl" >"$dir/events.jsonl"
    rm "$dir/all.jsonl" "$dir/warmup-all.jsonl"
    have=$(wc -l <"$dir/events.jsonl")
    [ "$have" -ge "$need" ] || { log "only $have relay events generated, need $need"; exit 1; }
    "$PY" "$repo_root/bench/steady_producer.py" --brokers "$BROKERS" --events "$dir/events.jsonl" \
        --rate "$RATE" --seconds "$DURATION" --partitions "$PARTITIONS" --create-only >/dev/null
    start_server "$dir"
    admin_port="$(free_port)"
    relay_config "$dir/relay/firn.toml" "$BROKERS" "$INTERVAL" "$admin_port"
    log "latency: firn relay (service, interval $INTERVAL); load: $(cut -d' ' -f1-3 /proc/loadavg)"
    (cd "$dir/relay" && exec /usr/bin/time -v -o "$dir/relay.time" "$FIRN" --config "$dir/relay/firn.toml" \
        relay >"$dir/relay.out" 2>"$dir/relay.err") &
    RELAY_PID=$!
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null || { log "the relay never became ready"; tail "$dir/relay.err" >&2; exit 1; }
    uptime >"$dir/uptime.before"
    ps -eo pid,pcpu,etime,args --sort=-pcpu | head -8 | cut -c1-160 >"$dir/ps.before"
    "$PY" "$repo_root/bench/steady_producer.py" --brokers "$BROKERS" --events "$dir/warmup.jsonl" \
        --rate "$RATE" --seconds 1 >/dev/null
    sleep 3
    log "producing $RATE events/s for ${DURATION}s"
    "$PY" "$repo_root/bench/steady_producer.py" --brokers "$BROKERS" --events "$dir/events.jsonl" \
        --rate "$RATE" --seconds "$DURATION" | tee "$dir/producer.json" >&2
    uptime >"$dir/uptime.after"
    # The last second's batch is cut an interval later; give it a few.
    sleep 5
    curl -sf "http://127.0.0.1:$admin_port/metrics" >"$dir/metrics.txt"
    # SIGTERM to firn itself (the child of /usr/bin/time): it loads what it read and exits.
    kill -TERM "$(pgrep -P "$RELAY_PID")"
    wait "$RELAY_PID" || true
    RELAY_PID=""
    curl -sf "$FE/__fake/clock" >"$dir/clock.json"
    collect "$dir"
    "$PY" "$repo_root/bench/relay_report.py" latency "$dir" | tee "$dir/report.json"
fi
log "results in $OUT"

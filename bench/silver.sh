#!/usr/bin/env bash
# Silver benchmark (issue 4; docs/benchmarks.md). One run, same machine, same Parquet files:
#   1. bench/gen_bronze.py appends EVENTS change events over KEYS keys (TENANTS tenants) to
#      firn's bronze.events (pyiceberg, bronze schema and partitioning);
#   2. full silver rebuild of that bronze snapshot, back to back: `firn transform silver
#      events --full` (release), then DuckDB, polars and PySpark (local mode) running the same
#      latest-per-key semantics over the snapshot's data files (bench/silver_peers.py);
#   3. twice, from step 2's state: CHANGE (default 1 %) more events appended to bronze,
#      spread over all tenants (`spread`) or all in one tenant (`one-tenant`); then, from the
#      same silver and bronze snapshots, `firn transform silver events --full` and the
#      incremental `firn transform silver events` (which recomputes the touched tenants, or
#      runs full when they hold more than half of silver's rows).
# Every run is measured as a process tree (bench/treemon.py: wall, CPU, peak RSS) and its row
# count is checked against firn's. Results: Markdown on stdout and in $OUT/silver.md.
#
# Env: EVENTS (10000000), KEYS (1000000), TENANTS (100), CHANGE (0.01), PEERS (duckdb polars
#      spark), OUT, FIRN_BIN (skip the build).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EVENTS="${EVENTS:-10000000}"
KEYS="${KEYS:-1000000}"
TENANTS="${TENANTS:-100}"
CHANGE="${CHANGE:-0.01}"
PEERS="${PEERS:-duckdb polars spark}"
OUT="${OUT:-/tmp/firn-bench/silver-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

build_release
bench_python
# PySpark needs a JVM (Java 17+); Debian's headless JRE is installed when there is none.
if [[ " $PEERS " == *" spark "* ]] && ! java -version >/dev/null 2>&1; then
    log "no java: apt-get install -y openjdk-17-jre-headless"
    apt-get install -y openjdk-17-jre-headless >/dev/null || { log "cannot install a JVM: skipping pyspark"; PEERS="${PEERS/spark/}"; }
fi

cd "$OUT"
cat >firn.toml <<'EOF'
[warehouse]
uri = "warehouse"
[[sources]]
table = "events"
topic = "cdc.{tenant}.{db}.events"
primary-key = ["id"]
EOF
"$FIRN" --config firn.toml init >/dev/null

# tmon NAME CMD...: measured run; sets WALL CPU RSS from $OUT/NAME.json. Every engine runs
# without RUST_BACKTRACE / RUST_LIB_BACKTRACE, as a deployed firn does: with them set, std
# captures a backtrace for every error value created, and iceberg 0.10.1's Arrow reader
# creates several per data file and column (eager `ok_or(Error::new(..))` that succeed),
# which cost firn 1.3-1.6 s of a 7.4 s silver rebuild on the machine of docs/benchmarks.md
# (the unwinder serialises the threads).
tmon() {
    local name="$1"
    shift
    env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \
        "$PY" "$repo_root/bench/treemon.py" "$OUT/$name.json" -- "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" || {
        log "$name failed; stderr:"
        tail -20 "$OUT/$name.err" >&2
        return 1
    }
    read -r WALL CPU RSS < <("$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["wall_s"], r["cpu_s"], r["peak_rss_mib"])' "$OUT/$name.json")
    log "$name: wall ${WALL}s, cpu ${CPU}s, peak RSS ${RSS} MiB"
}
field() { "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); r=r[0] if isinstance(r,list) else r; print(r[sys.argv[2]])' "$1" "$2"; }

log "bronze: $EVENTS events, $KEYS keys, $TENANTS tenants"
"$PY" "$repo_root/bench/gen_bronze.py" --warehouse "$OUT/warehouse" --events "$EVENTS" \
    --keys "$KEYS" --tenants "$TENANTS" | tee "$OUT/bronze1.json" >&2
list_files() {
    "$PY" - "$OUT/warehouse" >"$1" <<'EOF'
import sys
from pyiceberg.catalog.sql import SqlCatalog
w = sys.argv[1]
t = SqlCatalog("firn", uri=f"sqlite:///{w}/catalog.db", warehouse=f"file://{w}").load_table(("bronze", "events"))
print("\n".join(t.inspect.files().column("file_path").to_pylist()))
EOF
}
list_files "$OUT/files1.txt"
log "$(wc -l <"$OUT/files1.txt") bronze data files, $(du -sh "$OUT/warehouse/bronze" | cut -f1)"

declare -A R_WALL R_CPU R_RSS R_ROWS
tmon firn_full "$FIRN" --config firn.toml --json transform silver events --full
R_WALL[firn]=$WALL R_CPU[firn]=$CPU R_RSS[firn]=$RSS R_ROWS[firn]="$(field "$OUT/firn_full.out" rows)"
for peer in $PEERS; do
    rm -rf "$OUT/out-$peer"
    tmon "$peer" "$PY" "$repo_root/bench/silver_peers.py" "$peer" "$OUT/files1.txt" "$OUT/out-$peer" id
    R_WALL[$peer]=$WALL R_CPU[$peer]=$CPU R_RSS[$peer]=$RSS
    R_ROWS[$peer]="$(tail -1 "$OUT/$peer.out" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["rows"])')"
    rm -rf "$OUT/out-$peer"
done

change_events="$("$PY" -c "print(int($EVENTS * $CHANGE))")"
"$PY" -c 'import sqlite3,sys; s=sqlite3.connect(sys.argv[1]); d=sqlite3.connect(sys.argv[2]); s.backup(d); d.close()' \
    "$OUT/warehouse/catalog.db" "$OUT/warehouse/catalog-base.db"
copy_catalog() {
    "$PY" -c 'import sqlite3,sys; s=sqlite3.connect(sys.argv[1]); d=sqlite3.connect(sys.argv[2]); s.backup(d); d.close()' \
        "$OUT/warehouse/$1" "$OUT/warehouse/$2"
}
# change NAME ONLY_TENANTS: from step 2's state (catalog-base.db), append the change to
# bronze, then run the full and the incremental silver from the same silver and bronze
# snapshots, each on its own copy of the catalog (the copies share the data and metadata
# files, whose names never collide; a rollback would not do, since firn recognises a
# recomputation of an input it already committed). Sets C_* results for NAME.
declare -A C_FW C_FC C_FR C_FROWS C_IW C_IC C_IR C_IROWS C_MODE
change() {
    local name="$1" only="$2"
    copy_catalog catalog-base.db "catalog-$name-full.db"
    log "bronze: +$change_events events ($name)"
    "$PY" "$repo_root/bench/gen_bronze.py" --warehouse "$OUT/warehouse" --catalog "catalog-$name-full.db" \
        --events "$change_events" --keys "$KEYS" --tenants "$TENANTS" --first-event "$EVENTS" \
        --total-events "$EVENTS" --only-tenants "$only" | tee "$OUT/bronze-$name.json" >&2
    copy_catalog "catalog-$name-full.db" "catalog-$name-incremental.db"
    FIRN_CATALOG__URI="sqlite:$OUT/warehouse/catalog-$name-full.db" \
        tmon "full-$name" "$FIRN" --config firn.toml --json transform silver events --full
    C_FW[$name]=$WALL C_FC[$name]=$CPU C_FR[$name]=$RSS C_FROWS[$name]="$(field "$OUT/full-$name.out" rows)"
    FIRN_CATALOG__URI="sqlite:$OUT/warehouse/catalog-$name-incremental.db" \
        tmon "incremental-$name" "$FIRN" --config firn.toml --json transform silver events
    C_IW[$name]=$WALL C_IC[$name]=$CPU C_IR[$name]=$RSS C_IROWS[$name]="$(field "$OUT/incremental-$name.out" rows)"
    C_MODE[$name]="$("$PY" -c 'import json,sys; r=json.load(open(sys.argv[1]))[0]; print("incremental, %d tenants recomputed" % len(r["tenants"]) if r["mode"] == "incremental" else "%s: %s" % (r["mode"], r.get("reason")))' "$OUT/incremental-$name.out")"
}
change spread 0
change one-tenant 1

{
    echo "bronze: $EVENTS events, $KEYS keys over $TENANTS tenants, $(wc -l <"$OUT/files1.txt") Parquet files ($(du -sh "$OUT/warehouse/bronze" | cut -f1) with the increment); $(nproc) cores"
    echo
    echo "| full rebuild | wall s | CPU s | peak RSS MiB | rows | wall vs firn |"
    echo "|---|---:|---:|---:|---:|---:|"
    for engine in firn $PEERS; do
        ratio="$("$PY" -c "print(f'{${R_WALL[$engine]} / ${R_WALL[firn]}:.2f}x')")"
        echo "| $engine | ${R_WALL[$engine]} | ${R_CPU[$engine]} | ${R_RSS[$engine]} | ${R_ROWS[$engine]} | $ratio |"
    done
    echo
    echo "| after a ${CHANGE} change ($change_events events) | wall s | CPU s | peak RSS MiB | rows written | full / incremental (wall) |"
    echo "|---|---:|---:|---:|---:|---:|"
    for name in spread one-tenant; do
        echo "| $name: firn full rebuild | ${C_FW[$name]} | ${C_FC[$name]} | ${C_FR[$name]} | ${C_FROWS[$name]} | |"
        echo "| $name: firn incremental (${C_MODE[$name]}) | ${C_IW[$name]} | ${C_IC[$name]} | ${C_IR[$name]} | ${C_IROWS[$name]} | $("$PY" -c "print(f'{${C_FW[$name]} / ${C_IW[$name]}:.1f}x')") |"
    done
} | tee "$OUT/silver.md"
for engine in $PEERS; do
    [ "${R_ROWS[$engine]}" = "${R_ROWS[firn]}" ] || log "ROW COUNT MISMATCH: $engine ${R_ROWS[$engine]} vs firn ${R_ROWS[firn]}"
done
[ "${C_IROWS[spread]}" = "${C_FROWS[spread]}" ] || log "ROW COUNT MISMATCH: incremental ${C_IROWS[spread]} vs full ${C_FROWS[spread]}"
log "results in $OUT"

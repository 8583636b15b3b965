# Shared helpers of the benchmark scripts (sourced, not run): the release build, a tansu broker
# on a free port, and `measure`, which runs a command under /usr/bin/time -v and records wall
# time, CPU time (user + sys) and peak RSS. Does I/O (processes, files).

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FIRN_CACHE="${FIRN_CACHE:-$HOME/.cache/firn}"
# Release builds get their own target dir: the shared debug one stays warm for the tests.
RELEASE_TARGET_DIR="${FIRN_RELEASE_TARGET_DIR:-$FIRN_CACHE/target-release}"

log() { echo "==> $*" >&2; }

# Builds the release binaries (a no-op when up to date) and sets FIRN to the firn binary.
build_release() {
    if [ -n "${FIRN_BIN:-}" ]; then
        FIRN="$FIRN_BIN"
    else
        log "cargo build --release --workspace --bins (target: $RELEASE_TARGET_DIR)"
        (cd "$repo_root" && CARGO_TARGET_DIR="$RELEASE_TARGET_DIR" cargo build --release --workspace --bins --quiet)
        FIRN="$RELEASE_TARGET_DIR/release/firn"
    fi
    [ -x "$FIRN" ] || { log "no firn binary at $FIRN"; exit 1; }
}

bench_python() {
    PY="$("$repo_root/bench/python-env.sh")"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts tansu (in-memory storage) in $1 (a directory) and sets BROKERS and TANSU_PID.
start_tansu() {
    local dir="$1" tansu port
    tansu="$("$repo_root/tests/scripts/tansu.sh" path)"
    port="$(free_port)"
    # An empty working directory: tansu reads a .env file from its cwd.
    (cd "$dir" && exec "$tansu" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$dir/tansu.log" 2>&1) &
    TANSU_PID=$!
    BROKERS="127.0.0.1:$port"
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "tansu did not listen on $BROKERS"
    exit 1
}

stop_pid() {
    local pid="$1"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# RSS of a process in KiB.
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# measure NAME CMD...: runs CMD under /usr/bin/time -v; stdout goes to $OUT/NAME.out, stderr to
# $OUT/NAME.err, the resource report to $OUT/NAME.time. Sets WALL, CPU (seconds) and RSS_MIB.
measure() {
    local name="$1"
    shift
    /usr/bin/time -v -o "$OUT/$name.time" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" || {
        log "$name failed (exit $?); stderr:"
        tail -20 "$OUT/$name.err" >&2
        return 1
    }
    read -r WALL CPU RSS_MIB < <(awk -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i] }
        /User time/ { u = $2 } /System time/ { s = $2 } /Maximum resident/ { r = $2 }
        END { printf "%.2f %.2f %.0f\n", w, u + s, r / 1024 }' "$OUT/$name.time")
    log "$name: wall ${WALL}s, cpu ${CPU}s, peak RSS ${RSS_MIB} MiB"
}

# write_firn_config FILE BROKERS COMMIT_INTERVAL [EXTRA_KAFKA_LINES]: the four demo sources
# (what `firn gen` produces), an SQLite catalog in FILE's directory/warehouse.
write_firn_config() {
    cat >"$1" <<CONFIG
[warehouse]
uri = "warehouse"
[kafka]
brokers = "$2"
group-id = "firn-bench"
${4:-}
[commit]
interval = "$3"
[[sources]]
table = "customers"
topic = "cdc.{tenant}.{db}.customers"
primary-key = ["id"]
[[sources]]
table = "products"
topic = "cdc.{tenant}.{db}.products"
primary-key = ["id"]
[[sources]]
table = "orders"
topic = "cdc.{tenant}.{db}.orders"
primary-key = ["id"]
[[sources]]
table = "order_items"
topic = "cdc.{tenant}.{db}.order_items"
primary-key = ["order_id", "line_no"]
CONFIG
}

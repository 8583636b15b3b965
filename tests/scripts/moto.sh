#!/usr/bin/env bash
# A throwaway S3 API for firn's tests: moto's standalone server (`moto_server`, from the Python
# test venv, see tests/python/requirements.txt), in memory, unauthenticated (any credentials and
# unsigned requests are accepted). The S3-warehouse tests create a bucket of their own each.
#
#   tests/scripts/moto.sh start    build/refresh the venv if needed (python-env.sh), start the
#                                  server in the background and wait until it answers; idempotent;
#                                  prints nothing on success except a one-line status on stderr
#   tests/scripts/moto.sh stop     stop the server this script started (ok if it is not running)
#   tests/scripts/moto.sh status   exit 0 and print "running URL" if moto answers, else exit 3
#   tests/scripts/moto.sh url      print http://127.0.0.1:$PORT
#   tests/scripts/moto.sh dir      print the directory holding moto.pid and moto.log
#
# Env: FIRN_MOTO_PORT (default 5055), FIRN_CACHE (default ~/.cache/firn), FIRN_MOTO_DIR (pid and
# log directory; default $FIRN_CACHE/moto, or /tmp/firn-moto-$UID when $FIRN_CACHE is not
# writable). State lives only in the server's memory: a restart empties every bucket.
set -euo pipefail

port="${FIRN_MOTO_PORT:-5055}"
cache="${FIRN_CACHE:-$HOME/.cache/firn}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

log() { echo "moto.sh: $*" >&2; }
die() { log "$*"; exit 1; }

url() { echo "http://127.0.0.1:$port"; }

if [ -n "${FIRN_MOTO_DIR:-}" ]; then
    base="$FIRN_MOTO_DIR"
elif mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ]; then
    base="$cache/moto"
else
    base="/tmp/firn-moto-$(id -u)"
fi
pidfile="$base/moto.pid"
logfile="$base/moto.log"

# Is moto answering on 127.0.0.1:$port? `/moto-api/data.json` is moto's own state dump, so a
# different server on the port does not count.
answering() {
    curl -fsS -o /dev/null --max-time 2 "$(url)/moto-api/data.json" 2>/dev/null
}

# Anything at all listening on the port?
port_taken() {
    curl -sS -o /dev/null --max-time 2 "$(url)/" 2>/dev/null
}

# The pid in our pid file, if that process is still a moto_server.
our_pid() {
    local pid
    [ -f "$pidfile" ] || return 1
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q moto_server || return 1
    echo "$pid"
}

cmd_start() {
    mkdir -p "$base"
    # Serialise concurrent starts (two `make` invocations sharing one cache).
    exec 8>"$base/moto.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 8
    fi

    if answering; then
        if pid="$(our_pid)"; then
            log "already running on $(url) (pid $pid)"
        else
            log "already running on $(url) (not started by this script; left alone by 'stop')"
        fi
        return 0
    fi
    if port_taken; then
        die "something other than moto answers on 127.0.0.1:$port; set FIRN_MOTO_PORT to a free port"
    fi
    if pid="$(our_pid)"; then
        log "pid $pid from $pidfile is a moto_server that does not answer; stopping it"
        kill "$pid" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$pidfile"

    local python bindir
    python="$("$repo_root/tests/scripts/python-env.sh")"
    bindir="$(dirname "$python")"
    [ -x "$bindir/moto_server" ] || die "$bindir/moto_server is missing; is moto[server] in tests/python/requirements.txt?"

    local started
    started="$(date +%s%N)"
    (
        # The server outlives this script: it must hold none of our caller's descriptors (a CI
        # runner waiting for EOF on an inherited pipe would wait for ever).
        for fd in /proc/self/fd/*; do
            fd="${fd##*/}"
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
        done
        exec setsid "$bindir/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$logfile" 2>&1
    ) &
    local pid=$!
    echo "$pid" >"$pidfile"

    # Usually under a second (moto loads each service backend on first use); allow 60 s.
    local i
    for i in $(seq 1 120); do
        if answering; then
            log "running on $(url) (pid $pid, $((($(date +%s%N) - started) / 1000000)) ms to start, log $logfile)"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pidfile"
            log "moto_server exited; last lines of $logfile:"
            tail -n 30 "$logfile" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
    log "moto_server did not answer on $(url) within 60 s; last lines of $logfile:"
    tail -n 30 "$logfile" >&2 || true
    kill "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    exit 1
}

cmd_stop() {
    local pid i
    if pid="$(our_pid)"; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
        log "stopped (pid $pid)"
    fi
    rm -f "$pidfile"
}

cmd_status() {
    if answering; then
        echo "running $(url)"
        return 0
    fi
    echo "stopped"
    return 3
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) url ;;
    dir) echo "$base" ;;
    *)
        echo "usage: $0 start|stop|status|url|dir" >&2
        exit 2
        ;;
esac

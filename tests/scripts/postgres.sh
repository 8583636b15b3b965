#!/usr/bin/env bash
# A throwaway PostgreSQL server for firn's tests (the Postgres SQL catalog).
#
#   tests/scripts/postgres.sh start    install (Debian package) if missing, initdb if needed, start;
#                                      idempotent; creates database `firn`; prints nothing on success
#                                      except a one-line status on stderr
#   tests/scripts/postgres.sh stop     stop the server (ok if it is not running)
#   tests/scripts/postgres.sh status   exit 0 and print "running" if it answers, else exit 3
#   tests/scripts/postgres.sh url      print postgres://postgres@127.0.0.1:$PORT/firn
#   tests/scripts/postgres.sh dir      print the server's base directory (data/ and postgres.log)
#   tests/scripts/postgres.sh destroy  stop and delete the data directory
#
# Env: FIRN_PG_PORT (default 54329), FIRN_CACHE (default ~/.cache/firn), FIRN_PG_DIR (base dir
# override). The server listens only on 127.0.0.1 (trust auth, no password) with its unix socket
# inside the data directory, so it never collides with a system cluster on 5432.
#
# As root, the server runs as the `postgres` OS user (initdb refuses root). Its base directory is
# $FIRN_CACHE/pg when `postgres` can reach it, otherwise /tmp/firn-pg-$UID (a 0700 $HOME, as on
# CI, makes $HOME/.cache unreachable for other users; we do not loosen $HOME's permissions).
set -euo pipefail

port="${FIRN_PG_PORT:-54329}"
cache="${FIRN_CACHE:-$HOME/.cache/firn}"
db=firn

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

url() { echo "postgres://postgres@127.0.0.1:$port/$db"; }

if [ "$(id -u)" -eq 0 ]; then
    run_as=postgres
else
    run_as=""
fi

# Run a command as the server's OS user.
as_pg() {
    if [ -n "$run_as" ]; then
        runuser -u "$run_as" -- "$@"
    else
        "$@"
    fi
}

find_bindir() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && [ -x "$d/postgres" ] || continue
        # Highest major version wins (glob order is lexical: 9 > 15, so compare numerically).
        if [ -z "$best" ] || [ "$(basename "$(dirname "$d")")" -gt "$(basename "$(dirname "$best")")" ] 2>/dev/null; then
            best="$d"
        fi
    done
    [ -n "$best" ] && echo "$best"
}

ensure_installed() {
    bindir="$(find_bindir || true)"
    [ -n "$bindir" ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "PostgreSQL server binaries are missing and we are not root; install the Debian package 'postgresql'"
        sudo="sudo"
    fi
    log "installing PostgreSQL (apt-get install postgresql)"
    local out
    out="$(mktemp)"
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get install -y --no-install-recommends postgresql >"$out" 2>&1; then
        log "apt-get install failed; running apt-get update and retrying"
        if ! { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends postgresql; } >"$out" 2>&1; then
            cat "$out" >&2
            rm -f "$out"
            die "could not install postgresql"
        fi
    fi
    rm -f "$out"
    bindir="$(find_bindir || true)"
    [ -n "$bindir" ] || die "postgresql installed but no /usr/lib/postgresql/*/bin/pg_ctl found"
}

# Can the server's OS user reach (traverse) directory $1, or the nearest existing ancestor
# from which it would be created?
pg_can_reach() {
    local p="$1"
    [ -z "$run_as" ] && return 0
    while [ ! -e "$p" ]; do p="$(dirname "$p")"; done
    runuser -u "$run_as" -- test -x "$p"
}

choose_base() {
    if [ -n "${FIRN_PG_DIR:-}" ]; then
        base="$FIRN_PG_DIR"
    elif pg_can_reach "$cache"; then
        base="$cache/pg"
    else
        base="/tmp/firn-pg-$(id -u)"
    fi
    data="$base/data"
    logfile="$base/postgres.log"
}

# Where the base dir is known without side effects (no install, no mkdir).
choose_base

pg_ctl_() { as_pg "$bindir/pg_ctl" -D "$data" "$@"; }

# Is our server answering on 127.0.0.1:$port?
answering() {
    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 2 >/dev/null 2>&1
}

# A postmaster.pid left by a server that died with the machine (or was SIGKILLed) can name a
# PID that now belongs to an unrelated process, which makes postgres refuse to start.
clear_stale_pid() {
    local pidfile="$data/postmaster.pid" pid comm
    [ -f "$pidfile" ] || return 0
    pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -r "/proc/$pid/comm" ]; then
        comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
        case "$comm" in postgres | postmaster) return 0 ;; esac
    fi
    log "removing stale $pidfile (pid ${pid:-?} is not a postgres process)"
    rm -f "$pidfile"
}

cmd_start() {
    ensure_installed
    if [ -n "$run_as" ] && ! id "$run_as" >/dev/null 2>&1; then
        die "OS user '$run_as' does not exist (it comes with the postgresql-common package)"
    fi
    if [ -L "$base" ] || { [ -e "$base" ] && [ "$(stat -c %U "$base")" != "${run_as:-$(id -un)}" ] && [ "$(stat -c %u "$base")" != 0 ]; }; then
        die "$base exists but is a symlink or belongs to another user; remove it or set FIRN_PG_DIR"
    fi
    mkdir -p "$base"
    if [ -n "$run_as" ]; then
        chown "$run_as": "$base"
        pg_can_reach "$base" || die "user $run_as cannot reach $base; set FIRN_PG_DIR to a directory it can reach"
    fi

    if [ ! -s "$data/PG_VERSION" ]; then
        rm -rf "$data"
        log "initdb $data"
        local out
        out="$(mktemp)"
        chmod 644 "$out"
        [ -n "$run_as" ] && chown "$run_as": "$out"
        if ! as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$out" 2>&1; then
            cat "$out" >&2
            rm -f "$out"
            die "initdb failed"
        fi
        rm -f "$out"
    elif [ "$(cat "$data/PG_VERSION")" != "$(basename "$(dirname "$bindir")")" ]; then
        die "$data was made by PostgreSQL $(cat "$data/PG_VERSION"), not by $bindir; run '$0 destroy' first"
    fi

    if pg_ctl_ status >/dev/null 2>&1 && answering; then
        ensure_db
        log "already running on 127.0.0.1:$port ($data)"
        return 0
    fi
    if answering; then
        die "something else answers on 127.0.0.1:$port; set FIRN_PG_PORT to a free port"
    fi
    clear_stale_pid

    # Test-only settings: no durability (fsync off), enough connections for parallel tests.
    local opts="-c listen_addresses=127.0.0.1 -p $port -k $data"
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    opts+=" -c max_connections=200 -c shared_buffers=128MB"
    [ -n "$run_as" ] && touch "$logfile" && chown "$run_as": "$logfile"
    if ! (
        # The server outlives this script: it must hold none of our caller's descriptors (a CI
        # runner waiting for EOF on an inherited pipe would wait for ever).
        for fd in /proc/self/fd/*; do
            fd="${fd##*/}"
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
        done
        pg_ctl_ -w -t 60 -l "$logfile" -o "$opts" start </dev/null >/dev/null 2>&1
    ); then
        log "pg_ctl start failed; last lines of $logfile:"
        tail -n 30 "$logfile" >&2 || true
        exit 1
    fi
    ensure_db
    log "running on 127.0.0.1:$port ($data)"
}

psql_() {
    "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

ensure_db() {
    local have
    have="$(psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")"
    if [ "$have" != "1" ]; then
        psql_ -d postgres -c "CREATE DATABASE $db" >/dev/null
    fi
}

cmd_stop() {
    bindir="$(find_bindir || true)"
    [ -n "$bindir" ] || return 0
    [ -s "$data/PG_VERSION" ] || return 0
    if pg_ctl_ status >/dev/null 2>&1; then
        pg_ctl_ -w -t 60 -m fast stop >/dev/null
        log "stopped"
    fi
}

cmd_status() {
    bindir="$(find_bindir || true)"
    if [ -n "$bindir" ] && [ -s "$data/PG_VERSION" ] && pg_ctl_ status >/dev/null 2>&1 && answering; then
        echo "running $(url) ($data)"
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
    destroy)
        cmd_stop
        rm -rf "$base"
        ;;
    *)
        echo "usage: $0 start|stop|status|url|dir|destroy" >&2
        exit 2
        ;;
esac

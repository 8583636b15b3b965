# Shared by the scripts that keep a cached virtualenv (tests/scripts/python-env.sh,
# tests/scripts/airflow-env.sh, bench/python-env.sh). Sourced, not run: the caller sets
# `cache` (the cache root) and defines `log` first.

# venv_lock NAME: serialises concurrent runs that share one cache (two `make` invocations),
# holding `$cache/NAME.lock` on file descriptor 9 until the caller exits.
venv_lock() {
    mkdir -p "$cache"
    exec 9>"$cache/$1.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
}

# base_python WHO: prints the interpreter to build a venv from (FIRN_BASE_PYTHON, else
# python3.11, else python3) after checking it is Python 3.10 or newer, which WHO needs.
base_python() {
    local base="${FIRN_BASE_PYTHON:-}"
    if [ -z "$base" ]; then
        if command -v python3.11 >/dev/null 2>&1; then base=python3.11; else base=python3; fi
    fi
    if ! "$base" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
        log "$base is missing or older than Python 3.10 ($1 needs >= 3.10)"
        return 1
    fi
    echo "$base"
}

# build_venv VENV BASE PIP_ARGS...: a fresh venv at VENV built with BASE, an upgraded pip,
# then `pip install PIP_ARGS`. The old venv is removed first, so a package dropped from the
# requirements is gone too (as on CI's new machine) and a half-finished install never
# lingers. Quiet on success; on failure shows the output on stderr and returns 1.
build_venv() {
    local venv="$1" base="$2"
    shift 2
    local out
    out="$(mktemp "${TMPDIR:-/tmp}/firn-venv.XXXXXX")"
    rm -rf "$venv"
    if ! "$base" -m venv "$venv" >"$out" 2>&1; then
        log "creating the venv with $base failed:"
        cat "$out" >&2
        rm -f "$out"
        return 1
    fi
    if ! {
        "$venv/bin/python" -m pip install --quiet --upgrade pip &&
            "$venv/bin/python" -m pip install --quiet "$@"
    } >"$out" 2>&1; then
        log "pip install $* failed:"
        cat "$out" >&2
        rm -f "$out"
        return 1
    fi
    rm -f "$out"
}

#!/usr/bin/env bash
# Ensure the test virtualenv at ${FIRN_CACHE:-$HOME/.cache/firn}/venv exists and has
# tests/python/requirements.txt installed. Rebuilds it only when the requirements file's
# sha256 differs from the one stored in the venv (or the venv is broken); ~25 s cold.
#
# On success prints the venv's python path (and nothing else) on stdout.
# Quiet unless something fails; then pip's output is shown on stderr.
#
# Env: FIRN_CACHE (cache root), FIRN_BASE_PYTHON (interpreter to build the venv from;
#      default: python3.11, else python3).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
req="$repo_root/tests/python/requirements.txt"
cache="${FIRN_CACHE:-$HOME/.cache/firn}"
venv="$cache/venv"
stamp="$venv/.firn-requirements.sha256"

log() { echo "python-env: $*" >&2; }

[ -f "$req" ] || { log "missing $req"; exit 1; }
mkdir -p "$cache"

# Serialise concurrent runs (two `make` invocations sharing one cache).
exec 9>"$cache/venv.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

want="$(sha256sum "$req" | cut -d' ' -f1)"

venv_ok() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1
}

if venv_ok && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$venv/bin/python"
    exit 0
fi

base="${FIRN_BASE_PYTHON:-}"
if [ -z "$base" ]; then
    if command -v python3.11 >/dev/null 2>&1; then base=python3.11; else base=python3; fi
fi
if ! "$base" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    log "$base is missing or older than Python 3.10 (pyiceberg 0.12 needs >= 3.10)"
    exit 1
fi

out="$(mktemp "${TMPDIR:-/tmp}/firn-python-env.XXXXXX")"
trap 'rm -f "$out"' EXIT

# Missing, broken or out of date: build a fresh venv, so a package dropped from the requirements
# is gone too (as it is on CI's new machine) and a half-finished install never lingers.
rm -rf "$venv"
if ! "$base" -m venv "$venv" >"$out" 2>&1; then
    log "creating the venv with $base failed:"
    cat "$out" >&2
    exit 1
fi
if ! {
    "$venv/bin/python" -m pip install --quiet --upgrade pip &&
        "$venv/bin/python" -m pip install --quiet --upgrade -r "$req"
} >"$out" 2>&1; then
    log "pip install -r $req failed:"
    cat "$out" >&2
    exit 1
fi
echo "$want" >"$stamp"
echo "$venv/bin/python"

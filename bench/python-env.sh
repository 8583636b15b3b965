#!/usr/bin/env bash
# The benchmark virtualenv: ${FIRN_CACHE:-$HOME/.cache/firn}/bench-venv with
# tests/python/requirements.txt (pyiceberg, duckdb, polars, pyarrow) plus bench/requirements.txt
# (confluent-kafka, pyspark). Rebuilt only when either file changes. Prints the python path.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
reqs=("$repo_root/tests/python/requirements.txt" "$repo_root/bench/requirements.txt")
cache="${FIRN_CACHE:-$HOME/.cache/firn}"
venv="$cache/bench-venv"
stamp="$venv/.firn-requirements.sha256"

log() { echo "bench/python-env: $*" >&2; }

mkdir -p "$cache"
exec 9>"$cache/bench-venv.lock"
command -v flock >/dev/null 2>&1 && flock 9

want="$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$venv/bin/python"
    exit 0
fi
base="${FIRN_BASE_PYTHON:-}"
if [ -z "$base" ]; then
    if command -v python3.11 >/dev/null 2>&1; then base=python3.11; else base=python3; fi
fi
out="$(mktemp "${TMPDIR:-/tmp}/firn-bench-env.XXXXXX")"
trap 'rm -f "$out"' EXIT
log "building $venv (pyspark is a large download; once)"
rm -rf "$venv"
if ! { "$base" -m venv "$venv" &&
    "$venv/bin/python" -m pip install --quiet --upgrade pip &&
    "$venv/bin/python" -m pip install --quiet -r "${reqs[0]}" -r "${reqs[1]}"; } >"$out" 2>&1; then
    log "building the venv failed:"
    cat "$out" >&2
    exit 1
fi
echo "$want" >"$stamp"
echo "$venv/bin/python"

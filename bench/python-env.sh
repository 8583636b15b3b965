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

# shellcheck source=tests/scripts/venv-lib.sh
. "$repo_root/tests/scripts/venv-lib.sh"
venv_lock bench-venv

want="$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$venv/bin/python"
    exit 0
fi
base="$(base_python "pyiceberg 0.12")"
log "building $venv (pyspark is a large download; once)"
build_venv "$venv" "$base" -r "${reqs[0]}" -r "${reqs[1]}"
echo "$want" >"$stamp"
echo "$venv/bin/python"

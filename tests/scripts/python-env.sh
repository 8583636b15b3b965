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
# shellcheck source=tests/scripts/venv-lib.sh
. "$repo_root/tests/scripts/venv-lib.sh"
venv_lock venv

want="$(sha256sum "$req" | cut -d' ' -f1)"

venv_ok() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1
}

if venv_ok && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$venv/bin/python"
    exit 0
fi

base="$(base_python "pyiceberg 0.12")"
build_venv "$venv" "$base" --upgrade -r "$req"
echo "$want" >"$stamp"
echo "$venv/bin/python"

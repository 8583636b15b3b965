#!/usr/bin/env bash
# Ensure the Airflow virtualenv at ${FIRN_CACHE:-$HOME/.cache/firn}/airflow-venv exists with
# Airflow (version below), pyiceberg and pytest from airflow_dags/requirements.txt. It is a
# venv of its own so Airflow's pins never touch the main test venv (python-env.sh).
#
# Skips all work when the venv's marker names the same Airflow version and the same
# requirements/constraints content; otherwise rebuilds the venv from scratch (about 60 s cold,
# 510 MB).
# Exact versions: airflow_dags/constraints-<python major.minor>.txt when it exists for the
# venv's Python (the official constraints files are on GitHub, which CI cannot reach).
# `FIRN_AIRFLOW_FREEZE=1` rebuilds without constraints and writes that file from `pip freeze`.
#
# On success prints the venv's python path (and nothing else) on stdout.
# Quiet unless something fails; then pip's output is shown on stderr.
#
# Env: FIRN_CACHE (cache root), FIRN_BASE_PYTHON (interpreter to build the venv from;
#      default: python3.11, else python3).
set -euo pipefail

airflow_version="3.3.2"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
req="$repo_root/airflow_dags/requirements.txt"
cache="${FIRN_CACHE:-$HOME/.cache/firn}"
venv="$cache/airflow-venv"
marker="$venv/.firn-airflow"
freeze="${FIRN_AIRFLOW_FREEZE:-0}"

log() { echo "airflow-env: $*" >&2; }

[ -f "$req" ] || { log "missing $req"; exit 1; }
grep -qx "apache-airflow==$airflow_version" "$req" ||
    { log "$req does not pin apache-airflow==$airflow_version"; exit 1; }
# shellcheck source=tests/scripts/venv-lib.sh
. "$repo_root/tests/scripts/venv-lib.sh"
venv_lock airflow-venv

base="$(base_python "Airflow $airflow_version")"
pyver="$("$base" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
constraints="$repo_root/airflow_dags/constraints-$pyver.txt"

# The marker: Airflow version, Python version and a hash of what pip installs from.
fingerprint() {
    local files=("$req")
    [ -f "$constraints" ] && files+=("$constraints")
    echo "apache-airflow==$airflow_version python$pyver $(cat "${files[@]}" | sha256sum | cut -d' ' -f1)"
}
want="$(fingerprint)"

venv_ok() {
    [ -x "$venv/bin/python" ] && [ -x "$venv/bin/airflow" ] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1
}

if [ "$freeze" != 1 ] && venv_ok && [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
    echo "$venv/bin/python"
    exit 0
fi

pip_args=(-r "$req")
if [ "$freeze" != 1 ] && [ -f "$constraints" ]; then
    pip_args+=(-c "$constraints")
fi
build_venv "$venv" "$base" "${pip_args[@]}"
if [ "$freeze" = 1 ]; then
    {
        echo "# pip freeze of $venv (Python $pyver) built from airflow_dags/requirements.txt;"
        echo "# regenerate with FIRN_AIRFLOW_FREEZE=1 tests/scripts/airflow-env.sh"
        "$venv/bin/python" -m pip freeze --exclude-editable | LC_ALL=C sort
    } >"$constraints"
    log "wrote $constraints"
    want="$(fingerprint)"
fi
echo "$want" >"$marker"
echo "$venv/bin/python"

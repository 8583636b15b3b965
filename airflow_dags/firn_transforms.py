"""firn transforms: bronze -> silver -> gold, one Airflow mapped task per table (and tenant).

The DAG runs the `firn` binary; it does no data work itself:

1. ``silver_runs`` reads the pipeline config and lists one run per ``[[sources]]`` table
   (times each tenant in the ``tenants`` param, when given); ``gold_runs`` lists one gold run
   (or one per tenant).
2. ``silver`` is mapped over those runs: ``firn --json transform silver <table>
   [--tenant T] [--full]``. Silver is incremental by default, so most runs are cheap.
3. ``gold`` runs after every silver task succeeded or was skipped: ``firn --json transform
   gold all [--tenant T]``, which runs the ``[[gold]]`` models in dependency order.

Exit code 3 ("nothing to do: inputs unchanged") marks a task *skipped*; exit 1 (failure) and
2 (bad input) fail it after two retries (BashOperator cannot exempt 2 from retries). Each
successful task pushes firn's ``--json`` report (a list of run objects: table, status, input
snapshots, rows, snapshot id) to XCom as its return value.

Configuration, read when a run starts (never at parse time):

- Airflow Variable ``firn_bin``, else the worker's ``$FIRN_BIN``, else ``firn`` on ``PATH``.
- Airflow Variable ``firn_config``, else the worker's ``$FIRN_CONFIG``: the absolute path of
  the pipeline TOML file.
- Params (trigger form or ``dag_run.conf``): ``tables`` (default: every configured source),
  ``tenants`` (default: whole tables; gold per tenant needs models partitioned by ``tenant``
  alone), ``full`` (recompute silver from all of bronze).

Secrets stay out of the DAG: firn reads them from the worker's environment
(``FIRN_CATALOG__PASSWORD``, ``FIRN_WAREHOUSE__S3__SECRET_ACCESS_KEY``, ...), which every task
inherits.

Runs never overlap (``max_active_runs=1``): firn refuses a whole-table run that races another.
"""

from __future__ import annotations

import json
import os
import tomllib
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Param, Variable, dag, get_current_context, task

# Exit code of `firn transform` when every output is already computed from its current input.
EXIT_NOTHING_TO_DO = 3

# Runs one firn transform from the TRANSFORM_* variables the task was mapped with. Nothing is
# interpolated into the command (Airflow's advice for bash). The report is printed last, on one
# line, because BashOperator pushes the last output line to XCom (parsed by json.loads).
TRANSFORM_SCRIPT = """
set -u
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
args=(--config "$FIRN_CONFIG" --json transform "$TRANSFORM_TIER" "$TRANSFORM_TARGET")
if [ -n "${TRANSFORM_TENANT:-}" ]; then args+=(--tenant "$TRANSFORM_TENANT"); fi
if [ "${TRANSFORM_FULL:-}" = 1 ]; then args+=(--full); fi
"$FIRN_BIN" "${args[@]}" >"$report"
code=$?
tr -d '\\n' <"$report"
echo
exit "$code"
"""


def _setting(variable: str, env: str, default: str | None = None) -> str:
    value = Variable.get(variable, default=None) or os.environ.get(env) or default
    if not value:
        raise ValueError(f"set the Airflow Variable `{variable}` or the worker's ${env}")
    return value


def _common_env() -> dict[str, str]:
    config = _setting("firn_config", "FIRN_CONFIG")
    # Tasks run in a temporary working directory, so a relative path would point nowhere.
    if not os.path.isabs(config):
        raise ValueError(f"the firn config path must be absolute, got {config!r}")
    return {"FIRN_BIN": _setting("firn_bin", "FIRN_BIN", "firn"), "FIRN_CONFIG": config}


def _parse_report(line: str) -> list[dict]:
    """The XCom value: firn's --json report, or an empty list if the command printed none."""
    return json.loads(line) if line.strip() else []


@dag(
    dag_id="firn_transforms",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["firn", "iceberg", "transforms"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=2),
    },
    params={
        "tables": Param(
            [],
            type="array",
            items={"type": "string"},
            description="Source tables to recompute; empty: every [[sources]] table.",
        ),
        "tenants": Param(
            [],
            type="array",
            items={"type": "string"},
            description="Tenants, one task each; empty: whole tables.",
        ),
        "full": Param(
            False, type="boolean", description="Recompute silver from all of bronze (--full)."
        ),
    },
    doc_md=__doc__,
)
def firn_transforms():
    @task
    def silver_runs() -> list[dict[str, str]]:
        """The environment of each silver task: every table (times every tenant, if given)."""
        params = get_current_context()["params"]
        common = _common_env()
        tables = params["tables"]
        if not tables:
            with open(common["FIRN_CONFIG"], "rb") as f:
                tables = [source["table"] for source in tomllib.load(f).get("sources", [])]
        if not tables:
            raise ValueError(f"{common['FIRN_CONFIG']} configures no [[sources]]: nothing to do")
        full = "1" if params["full"] else ""
        return [
            {
                **common,
                "TRANSFORM_TIER": "silver",
                "TRANSFORM_TARGET": table,
                "TRANSFORM_TENANT": tenant,
                "TRANSFORM_FULL": full,
            }
            for table in tables
            for tenant in params["tenants"] or [""]
        ]

    @task
    def gold_runs() -> list[dict[str, str]]:
        """The environment of each gold task: every model, once (or once per tenant)."""
        params = get_current_context()["params"]
        common = _common_env()
        return [
            {
                **common,
                "TRANSFORM_TIER": "gold",
                "TRANSFORM_TARGET": "all",
                "TRANSFORM_TENANT": tenant,
                "TRANSFORM_FULL": "",  # gold always recomputes from its inputs
            }
            for tenant in params["tenants"] or [""]
        ]

    transform = {
        "bash_command": TRANSFORM_SCRIPT,
        "append_env": True,  # the worker's PATH and firn's secrets
        "skip_on_exit_code": EXIT_NOTHING_TO_DO,
        "output_processor": _parse_report,
        # Task instances are named "orders", "orders acme", "all acme" in the UI.
        "map_index_template": (
            "{{ task.env.TRANSFORM_TARGET }}"
            "{% if task.env.TRANSFORM_TENANT %} {{ task.env.TRANSFORM_TENANT }}{% endif %}"
        ),
    }
    silver = BashOperator.partial(
        task_id="silver",
        # Each run uses every core and up to 2 GiB before spilling; a few at a time is plenty.
        max_active_tis_per_dagrun=4,
        **transform,
    ).expand(env=silver_runs())
    gold = BashOperator.partial(
        task_id="gold",
        # Skipped silver tasks (nothing new) must not skip gold: a model may still be stale.
        trigger_rule="none_failed",
        **transform,
    ).expand(env=gold_runs())
    silver >> gold


firn_transforms()

"""firn transforms: bronze -> silver -> gold, one Airflow mapped task per table (and tenant).

The DAG runs the `firn` binary; it does no data work itself:

1. ``silver_runs`` reads the pipeline config and lists one run per ``[[sources]]`` table
   (times each tenant in the ``tenants`` param, when given); ``gold_runs`` lists one gold run
   (or one per tenant).
2. ``silver`` is mapped over those runs: ``firn --json transform silver <table>
   [--tenant T] [--full]``. Silver is incremental by default, so most runs are cheap.
3. ``gold`` runs after every silver task succeeded or was skipped: ``firn --json transform
   gold all [--tenant T]``, which runs the ``[[gold]]`` models in dependency order.

Each transform task runs firn directly (an argument list, no shell) and maps its exit code:

- 0: success; firn's ``--json`` report (a list of run objects: table, status, input
  snapshots, rows, snapshot id) is the task's XCom return value.
- 3 ("nothing to do: inputs unchanged"): the task is *skipped*.
- 2 (bad input: unknown table, invalid configuration, an operation the table refuses): the
  task *fails at once*, without retries (re-running cannot fix its input); the message
  carries firn's ``error: ...`` line.
- 1 (failure: catalog, storage, a lost race, ...), any other code, or a signal: the task
  fails and is retried (twice, with exponential backoff).

firn's stderr (its logs and the ``error:`` line) streams into the task log as it runs.

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
import logging
import os
import shlex
import signal
import subprocess
import tempfile
import tomllib
from datetime import timedelta

import pendulum
from airflow.sdk import Param, Variable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

# A fixed name: the DAG processor imports this file under a generated module name.
log = logging.getLogger("firn_transforms")

# Exit codes of `firn transform` (README "Exit codes"); 1 and anything else is a failure.
EXIT_BAD_INPUT = 2
EXIT_NOTHING_TO_DO = 3

# How long firn may take to exit after SIGTERM when the task is stopped (timeout, mark failed).
STOP_GRACE_SECONDS = 30


class TransformFailed(AirflowException):
    """firn failed (exit 1, another code, or a signal): Airflow retries the task."""


def _setting(variable: str, env: str, default: str | None = None) -> str:
    value = Variable.get(variable, default=None) or os.environ.get(env) or default
    if not value:
        raise ValueError(f"set the Airflow Variable `{variable}` or the worker's ${env}")
    return value


def _common() -> dict[str, str]:
    config = _setting("firn_config", "FIRN_CONFIG")
    # Tasks run in a temporary working directory, so a relative path would point nowhere.
    if not os.path.isabs(config):
        raise ValueError(f"the firn config path must be absolute, got {config!r}")
    return {"firn_bin": _setting("firn_bin", "FIRN_BIN", "firn"), "config": config}


def transform_argv(run: dict) -> list[str]:
    """firn's argument list for one mapped run (a dict from ``silver_runs``/``gold_runs``).

    Values from params only ever become single arguments: ``--tenant=T`` and the ``--`` before
    the table keep a value that starts with ``-`` from being read as a flag.
    """
    argv = [run["firn_bin"], "--config", run["config"], "--json", "transform", run["tier"]]
    if run["tenant"]:
        argv.append(f"--tenant={run['tenant']}")
    if run["full"]:
        argv.append("--full")
    return [*argv, "--", run["target"]]


def transform_outcome(what: str, code: int, report: str, error: str | None) -> list[dict]:
    """The task's result for firn's exit ``code``: the parsed ``--json`` report on 0, else the
    exception that gives the task its state (skipped, failed at once, or failed and retried).

    ``error`` is the last ``error: ...`` line firn printed on stderr, if any.
    """
    if code == 0:
        return json.loads(report) if report.strip() else []
    if code == EXIT_NOTHING_TO_DO:
        raise AirflowSkipException(f"{what}: nothing to do, inputs unchanged (exit 3)")
    detail = error or "no `error:` line on stderr"
    if code == EXIT_BAD_INPUT:
        raise AirflowFailException(f"{what}: bad input, not retried (exit 2): {detail}")
    if code < 0:
        name = next((s.name for s in signal.Signals if s == -code), f"signal {-code}")
        raise TransformFailed(f"{what}: killed by {name}: {detail}")
    raise TransformFailed(f"{what}: failed with exit code {code}: {detail}")


def run_transform(run: dict) -> list[dict]:
    """Runs one firn transform (I/O: a subprocess) and returns its report; see the module doc.

    The environment is inherited (the worker's PATH and firn's secrets). stdout, the report,
    goes to a temporary file so that reading stderr line by line can never block firn.
    """
    argv = transform_argv(run)
    what = f"firn transform {run['tier']} {run['target']}" + (
        f" --tenant {run['tenant']}" if run["tenant"] else ""
    )
    log.info("running %s", shlex.join(argv))
    error = None
    with tempfile.TemporaryFile() as stdout:
        proc = subprocess.Popen(
            argv, stdout=stdout, stderr=subprocess.PIPE, text=True, errors="replace"
        )
        try:
            for line in proc.stderr:
                line = line.rstrip("\n")
                log.info("firn: %s", line)
                if line.startswith("error:"):
                    error = line
            code = proc.wait()
        finally:
            # The task was stopped (timeout, marked failed, SIGTERM): stop firn with it.
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stderr.close()
        stdout.seek(0)
        report = stdout.read().decode(errors="replace")
    log.info("%s exited with %s", what, code)
    return transform_outcome(what, code, report, error)


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
    def silver_runs() -> list[dict]:
        """One run per silver task: every table (times every tenant, if given)."""
        params = get_current_context()["params"]
        common = _common()
        tables = params["tables"]
        if not tables:
            with open(common["config"], "rb") as f:
                tables = [source["table"] for source in tomllib.load(f).get("sources", [])]
        if not tables:
            raise ValueError(f"{common['config']} configures no [[sources]]: nothing to do")
        return [
            {
                **common,
                "tier": "silver",
                "target": table,
                "tenant": tenant,
                "full": bool(params["full"]),
            }
            for table in tables
            for tenant in params["tenants"] or [""]
        ]

    @task
    def gold_runs() -> list[dict]:
        """One run per gold task: every model, once (or once per tenant)."""
        params = get_current_context()["params"]
        common = _common()
        return [
            # Gold always recomputes from its inputs: never --full.
            {**common, "tier": "gold", "target": "all", "tenant": tenant, "full": False}
            for tenant in params["tenants"] or [""]
        ]

    transform = task(
        run_transform,
        # Task instances are named "orders", "orders acme", "all acme" in the UI.
        map_index_template=(
            "{{ task.op_kwargs.run.target }}"
            "{% if task.op_kwargs.run.tenant %} {{ task.op_kwargs.run.tenant }}{% endif %}"
        ),
    )
    silver = transform.override(
        task_id="silver",
        # Each run uses every core and up to 2 GiB before spilling; a few at a time is plenty.
        max_active_tis_per_dagrun=4,
    ).expand(run=silver_runs())
    gold = transform.override(
        task_id="gold",
        # Skipped silver tasks (nothing new) must not skip gold: a model may still be stale.
        trigger_rule="none_failed",
    ).expand(run=gold_runs())
    silver >> gold


firn_transforms()

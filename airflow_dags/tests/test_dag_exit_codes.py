"""Each exit of ``firn transform`` gives its Airflow task the right outcome.

0 -> success with the ``--json`` report as the return value; 3 -> skipped; 2 (bad input) ->
failed at once, never retried, with firn's ``error:`` line in the message; 1, any other code or
a signal -> failed and retried.

The real firn binary produces 0, 2 and 3 (0 and 3 on the demo lake of conftest.lake, 2 for an
unknown table); a fake executable produces 1, a panic's 101 and a SIGKILL. Each code is checked
on the task callable itself (return value or exception) and, for the failures, in a whole
``dag.test()`` run (task state and try number: one try for 2, 1 + retries for the others).
A task stopped by its execution_timeout stops firn too.
Needs the debug firn binary (see conftest.firn_bin); fails when it or Airflow is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
from datetime import timedelta
from pathlib import Path

import pendulum
import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from conftest import REPO_ROOT, transforms_dag
from firn_transforms import TransformFailed, run_transform


def silver_run(firn_bin: Path, config: Path, table: str) -> dict:
    """The run dict ``silver_runs`` maps a whole-table, incremental silver task over."""
    return {
        "firn_bin": str(firn_bin),
        "config": str(config),
        "tier": "silver",
        "target": table,
        "tenant": "",
        "full": False,
    }


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A valid configuration (the example) over an empty warehouse."""
    path = tmp_path / "firn.toml"
    shutil.copy(REPO_ROOT / "docs" / "firn.example.toml", path)
    return path


def fake_firn(tmp_path: Path, body: str) -> Path:
    """An executable standing in for firn: records its arguments, then runs ``body`` (sh)."""
    path = tmp_path / "fake-firn"
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >"{tmp_path}/argv"\n{body}\n')
    path.chmod(0o755)
    return path


def run_silver(dag, conf: dict):
    """One ``dag.test()`` run with retries one second apart; returns (run, silver TIs, gold TIs)."""
    # The DAG's 1-minute retry delay would make a retried task wait minutes here.
    dag.get_task("silver").retry_delay = timedelta(0)
    dag_run = dag.test(logical_date=pendulum.now("UTC"), run_conf=conf)
    tis = dag_run.get_task_instances()
    return (
        dag_run,
        [ti for ti in tis if ti.task_id == "silver"],
        [ti for ti in tis if ti.task_id == "gold"],
    )


def test_exit_0_returns_the_report(firn_bin: Path, lake):
    config, catalog, expected = lake

    [report] = run_transform(silver_run(firn_bin, config, "customers"))

    assert report["table"] == "silver.customers"
    assert report["status"] == "Committed"
    assert report["rows"] == expected["silver.customers"]
    snapshot = catalog.load_table("silver.customers").current_snapshot()
    assert snapshot is not None and snapshot.snapshot_id == report["snapshot_id"]


def test_exit_3_skips(firn_bin: Path, lake):
    config, catalog, _ = lake
    run = silver_run(firn_bin, config, "customers")
    [report] = run_transform(run)

    # Bronze is unchanged since: firn exits 3 and the task is skipped, committing nothing.
    with pytest.raises(AirflowSkipException, match=r"exit 3"):
        run_transform(run)
    assert catalog.load_table("silver.customers").current_snapshot().snapshot_id == (
        report["snapshot_id"]
    )


def test_exit_2_fails_at_once_with_firns_error(
    airflow_db, firn_bin: Path, config: Path, monkeypatch
):
    with pytest.raises(AirflowFailException) as failure:
        run_transform(silver_run(firn_bin, config, "nosuch"))
    assert "(exit 2): error: no configured source table `nosuch`" in str(failure.value)

    dag_run, [silver], [gold] = run_silver(
        transforms_dag(monkeypatch, firn_bin, config), {"tables": ["nosuch"]}
    )
    assert (silver.state, silver.try_number) == ("failed", 1)  # one try: not retried
    assert silver.rendered_map_index == "nosuch"
    assert gold.state == "upstream_failed"
    assert dag_run.state == "failed"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "echo 'error: catalog unreachable' >&2; exit 1",
            "exit code 1: error: catalog unreachable",
        ),
        ("echo 'panicked at src/main.rs' >&2; exit 101", "exit code 101: no `error:` line"),
        ("kill -KILL $$", "killed by SIGKILL"),
    ],
    ids=["exit-1", "exit-101", "sigkill"],
)
def test_failures_and_signals_are_retried(
    airflow_db, tmp_path: Path, config: Path, monkeypatch, body: str, message: str
):
    firn = fake_firn(tmp_path, body)

    with pytest.raises(TransformFailed, match=message) as failure:
        run_transform(silver_run(firn, config, "orders"))
    assert not isinstance(failure.value, (AirflowFailException, AirflowSkipException))
    assert (tmp_path / "argv").read_text().splitlines() == [
        "--config",
        str(config),
        "--json",
        "transform",
        "silver",
        "--",
        "orders",
    ]

    dag = transforms_dag(monkeypatch, firn, config)
    dag_run, [silver], [gold] = run_silver(dag, {"tables": ["orders"]})
    # Failed after every retry: one try plus the DAG's retries.
    assert (silver.state, silver.try_number) == ("failed", 1 + dag.get_task("silver").retries)
    assert dag.get_task("silver").retries == 2
    assert gold.state == "upstream_failed"
    assert dag_run.state == "failed"


def test_a_stopped_task_stops_firn(airflow_db, tmp_path: Path, config: Path, monkeypatch):
    # firn (here: a sleep in its place) outlives the task's execution_timeout.
    firn = fake_firn(tmp_path, f'echo $$ >"{tmp_path}/pid"\nexec sleep 120')
    dag = transforms_dag(monkeypatch, firn, config)
    dag.get_task("silver").execution_timeout = timedelta(seconds=3)
    dag.get_task("silver").retries = 0

    dag_run, [silver], _ = run_silver(dag, {"tables": ["orders"]})

    assert silver.state == "failed"
    pid = int((tmp_path / "pid").read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # terminated and reaped by the task
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"firn (pid {pid}) still runs after its task was stopped")

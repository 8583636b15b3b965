"""The DAG folder parses with Airflow's own DagBag: no import errors, the expected tasks,
dependencies and settings. No firn binary or data needed."""

from __future__ import annotations

from pathlib import Path

from airflow.dag_processing.dagbag import DagBag
from conftest import DAGS_FOLDER
from firn_transforms import transform_argv


def load_dag(airflow_db):
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    assert bag.dag_ids == ["firn_transforms"]
    # .airflowignore keeps the tests (and their conftest) out of the DAG processor.
    assert [Path(f).name for f in bag.file_last_changed] == ["firn_transforms.py"]
    return bag.dags["firn_transforms"]


def test_dag_loads_with_expected_tasks(airflow_db):
    dag = load_dag(airflow_db)

    assert sorted(dag.task_ids) == ["gold", "gold_runs", "silver", "silver_runs"]
    deps = {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}
    assert deps == {
        "silver_runs": [],
        "gold_runs": [],
        "silver": ["silver_runs"],
        "gold": ["gold_runs", "silver"],
    }


def test_transform_tasks_are_mapped_runs_of_run_transform(airflow_db):
    dag = load_dag(airflow_db)

    for task_id in ("silver", "gold"):
        task = dag.get_task(task_id)
        # Mapped over the run dicts the *_runs tasks return, one task instance per table.
        assert task.is_mapped, task_id
        assert task.python_callable.__name__ == "run_transform"
        assert task.retries >= 1
        assert "task.op_kwargs.run.target" in task.map_index_template
    assert dag.get_task("silver").max_active_tis_per_dagrun == 4
    # Gold still runs when every silver task was skipped (nothing new) but none failed.
    assert dag.get_task("gold").trigger_rule == "none_failed"


def test_transform_argv_keeps_every_value_one_argument():
    run = {
        "firn_bin": "/opt/firn/bin/firn",
        "config": "/etc/firn/firn.toml",
        "tier": "silver",
        "target": "orders",
        "tenant": "",
        "full": False,
    }
    assert transform_argv(run) == [
        "/opt/firn/bin/firn",
        "--config",
        "/etc/firn/firn.toml",
        "--json",
        "transform",
        "silver",
        "--",
        "orders",
    ]
    # Values from params that look like flags or shell stay single, literal arguments.
    hostile = {**run, "target": "--full", "tenant": "--x; rm -rf /", "full": True}
    assert transform_argv(hostile)[-4:] == ["--tenant=--x; rm -rf /", "--full", "--", "--full"]


def test_dag_settings(airflow_db):
    dag = load_dag(airflow_db)

    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert set(dag.params.keys()) == {"tables", "tenants", "full"}
    defaults = {name: dag.params[name] for name in dag.params}
    assert defaults == {"tables": [], "tenants": [], "full": False}
    assert dag.doc_md and "firn" in dag.doc_md

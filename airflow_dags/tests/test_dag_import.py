"""The DAG folder parses with Airflow's own DagBag: no import errors, the expected tasks,
dependencies and settings. No firn binary or data needed."""

from __future__ import annotations

from pathlib import Path

from airflow.dag_processing.dagbag import DagBag
from airflow.providers.standard.operators.bash import BashOperator
from conftest import DAGS_FOLDER


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


def test_transform_tasks_are_mapped_bash_with_skip_on_exit_3(airflow_db):
    dag = load_dag(airflow_db)

    for task_id in ("silver", "gold"):
        task = dag.get_task(task_id)
        # Mapped over the env dicts the *_runs tasks return, one task instance per table.
        assert task.is_mapped, task_id
        assert issubclass(task.operator_class, BashOperator)
        kwargs = task.partial_kwargs
        assert kwargs["skip_on_exit_code"] == 3
        assert kwargs["append_env"] is True
        assert kwargs["retries"] >= 1
        assert task.expand_input.value.keys() == {"env"}
    # Gold still runs when every silver task was skipped (nothing new) but none failed.
    assert dag.get_task("gold").partial_kwargs["trigger_rule"] == "none_failed"


def test_dag_settings(airflow_db):
    dag = load_dag(airflow_db)

    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert set(dag.params.keys()) == {"tables", "tenants", "full"}
    defaults = {name: dag.params[name] for name in dag.params}
    assert defaults == {"tables": [], "tenants": [], "full": False}
    assert dag.doc_md and "firn" in dag.doc_md

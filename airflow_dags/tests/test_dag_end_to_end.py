"""The firn_transforms DAG run for real (``dag.test()``) against a real firn lake.

The lake: ``firn demo`` in a temporary directory ingests the generator's Debezium stream into
bronze (SQLite catalog, local warehouse) and computes silver and gold, checking its counts
against the generator's. The test keeps the demo's silver and gold row counts as the expected
results, then drops the silver and gold tables with pyiceberg, which leaves the lake as ingest
alone leaves it. The DAG must rebuild them from bronze with the same counts; a second run must
find nothing to do (exit 3 -> every transform task skipped); a per-tenant ``--full`` run must
map one task per table and tenant and replace only that tenant's partitions.

Needs the debug firn binary (see conftest.firn_bin); fails when it or Airflow is missing.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pendulum
import pytest
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from conftest import SILVER, transforms_dag


@pytest.fixture
def dag(airflow_db, firn_bin: Path, lake, monkeypatch):
    config, _, _ = lake
    return transforms_dag(monkeypatch, firn_bin, config)


def run(dag, when, conf=None):
    """Runs the DAG once; returns {(task_id, rendered map index): (state, XCom return value)}."""
    dag_run = dag.test(logical_date=when, run_conf=conf)
    assert dag_run.state == "success", dag_run.state
    with create_session() as session:
        xcoms = {
            (x.task_id, x.map_index): XComModel.deserialize_value(x)
            for x in session.scalars(
                XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag.dag_id, key="return_value")
            )
        }
    return {
        (ti.task_id, ti.rendered_map_index or ti.map_index): (
            str(ti.state),
            xcoms.get((ti.task_id, ti.map_index)),
        )
        for ti in dag_run.get_task_instances()
        if ti.task_id in ("silver", "gold")
    }


def current(catalog, table):
    snapshot = catalog.load_table(table).current_snapshot()
    assert snapshot is not None, f"{table} has no snapshot"
    return snapshot


def test_dag_builds_silver_and_gold_then_skips(dag, lake):
    _, catalog, expected = lake
    start = pendulum.now("UTC")

    # 1. Bronze only: every silver table and every gold model is computed.
    first = run(dag, start)
    assert sorted(first) == sorted([("silver", t) for t in SILVER] + [("gold", "all")])
    for table in SILVER:
        state, reports = first[("silver", table)]
        assert state == "success", table
        [report] = reports  # the --json report, parsed, is the task's XCom value
        assert report["table"] == f"silver.{table}"
        assert report["status"] == "Committed"
        assert report["mode"] == "full"
        assert report["rows"] == expected[f"silver.{table}"]
        snapshot = current(catalog, f"silver.{table}")
        assert snapshot.snapshot_id == report["snapshot_id"]
        bronze = current(catalog, f"bronze.{table}")
        lineage = json.loads(snapshot.summary["firn.input-snapshots"])
        assert lineage == {f"bronze.{table}": bronze.snapshot_id}
        assert catalog.load_table(f"silver.{table}").scan().to_arrow().num_rows == report["rows"]
    state, reports = first[("gold", "all")]
    assert state == "success"
    gold = {r["table"]: r for r in reports}
    assert set(gold) == {t for t in expected if t.startswith("gold.")}
    for table, report in gold.items():
        assert report["status"] == "Committed", table
        assert current(catalog, table).snapshot_id == report["snapshot_id"]
        assert catalog.load_table(table).scan().to_arrow().num_rows == expected[table]

    snapshots = {t: current(catalog, t).snapshot_id for t in expected}

    # 2. Nothing changed: firn exits 3 everywhere, every transform task is skipped.
    second = run(dag, start + timedelta(minutes=1))
    assert sorted(second) == sorted(first)
    assert {key: state for key, (state, _) in second.items()} == {key: "skipped" for key in first}
    assert {t: current(catalog, t).snapshot_id for t in expected} == snapshots

    # 3. One tenant, recomputed from all of bronze: one task per table and tenant, and the new
    #    snapshots replace only that tenant's partitions.
    third = run(dag, start + timedelta(minutes=2), {"tenants": ["acme"], "full": True})
    assert sorted(third) == sorted(
        [("silver", f"{t} acme") for t in SILVER] + [("gold", "all acme")]
    )
    for table in SILVER:
        state, [report] = third[("silver", f"{table} acme")]
        assert state == "success", table
        assert report["tenants"] == ["acme"]
        snapshot = current(catalog, f"silver.{table}")
        assert snapshot.snapshot_id != snapshots[f"silver.{table}"]
        assert json.loads(snapshot.summary["firn.tenants"]) == ["acme"]
        # Same bronze, same rows: a tenant recompute changes nothing in the content.
        assert (
            catalog.load_table(f"silver.{table}").scan().to_arrow().num_rows
            == expected[f"silver.{table}"]
        )
    state, reports = third[("gold", "all acme")]
    assert state == "success"
    assert all(r["tenants"] == ["acme"] for r in reports)

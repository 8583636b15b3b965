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
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pendulum
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from conftest import DAGS_FOLDER, REPO_ROOT
from pyiceberg.catalog.sql import SqlCatalog

SILVER = ["customers", "products", "orders", "order_items"]


@pytest.fixture
def lake(firn_bin: Path, tmp_path: Path):
    """A lake with bronze only; returns (config path, catalog, expected rows per table)."""
    demo = subprocess.run(
        [str(firn_bin), "demo", "--dir", str(tmp_path), "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, f"firn demo failed:\n{demo.stderr[-4000:]}"
    report = json.loads(demo.stdout)
    expected = {
        t["table"]: t["rows"]
        for t in report["tables"]
        if t["table"].startswith(("silver.", "gold."))
    }
    assert sorted(t for t in expected if t.startswith("silver.")) == sorted(
        f"silver.{t}" for t in SILVER
    )
    assert all(rows > 0 for rows in expected.values()), expected

    # The same configuration the demo runs with (its built-in copy of this file).
    config = tmp_path / "firn.toml"
    shutil.copy(REPO_ROOT / "docs" / "firn.example.toml", config)
    shutil.copytree(REPO_ROOT / "sql" / "gold", tmp_path / "sql" / "gold")

    warehouse = tmp_path / "warehouse"
    catalog = SqlCatalog(
        "firn", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.as_uri()
    )
    for namespace in ("silver", "gold"):
        for identifier in catalog.list_tables(namespace):
            catalog.drop_table(identifier)
    assert catalog.list_tables("silver") == [] and catalog.list_tables("gold") == []
    return config, catalog, expected


@pytest.fixture
def dag(airflow_db, firn_bin: Path, lake, monkeypatch):
    config, _, _ = lake
    # Airflow Variables from the environment, as a deployment may set them.
    monkeypatch.setenv("AIRFLOW_VAR_FIRN_BIN", str(firn_bin))
    monkeypatch.setenv("AIRFLOW_VAR_FIRN_CONFIG", str(config))
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag.dags["firn_transforms"]


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

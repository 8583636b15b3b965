"""Shared setup for the DAG tests: a throwaway AIRFLOW_HOME and the firn binary.

Airflow reads its configuration when it is first imported, so this module points AIRFLOW_HOME
at a fresh temporary directory (SQLite metadata database, logs) before any test imports
Airflow: nothing touches ~/airflow. Run with the Airflow venv's pytest:
$(tests/scripts/airflow-env.sh) -m pytest airflow_dags/tests
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from pyiceberg.catalog.sql import SqlCatalog

DAGS_FOLDER = Path(__file__).resolve().parents[1]
REPO_ROOT = DAGS_FOLDER.parent
# Tests that call the DAG module's functions directly import it as `firn_transforms`.
sys.path.insert(0, str(DAGS_FOLDER))
SILVER = ["customers", "products", "orders", "order_items"]

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="firn-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
    }
)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Creates the Airflow metadata database (SQLite) in the temporary AIRFLOW_HOME."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}"
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def firn_bin() -> Path:
    """The debug firn binary: $FIRN_BIN, else $CARGO_TARGET_DIR/debug/firn. Fails if missing."""
    explicit = os.environ.get("FIRN_BIN")
    if explicit:
        path = Path(explicit)
    else:
        cache = Path(os.environ.get("FIRN_CACHE", Path.home() / ".cache" / "firn"))
        target = Path(os.environ.get("CARGO_TARGET_DIR", cache / "target"))
        path = target / "debug" / "firn"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"firn binary not found at {path}: run `cargo build --workspace --all-targets` "
            "(or set FIRN_BIN)"
        )
    return path


@pytest.fixture
def lake(firn_bin: Path, tmp_path: Path):
    """A lake with bronze only; returns (config path, catalog, expected rows per table).

    ``firn demo`` builds bronze, silver and gold and checks its counts; the expected rows are
    its silver and gold counts. Silver and gold are then dropped (pyiceberg), which leaves the
    lake as ingest alone leaves it.
    """
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


def transforms_dag(monkeypatch, firn_bin: Path, config: Path):
    """The firn_transforms DAG as Airflow's DagBag parses it, pointed at ``firn_bin`` and
    ``config`` through Airflow Variables from the environment, as a deployment may set them."""
    # Imported here, not at the top: Airflow must not load before AIRFLOW_HOME is set above.
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW_VAR_FIRN_BIN", str(firn_bin))
    monkeypatch.setenv("AIRFLOW_VAR_FIRN_CONFIG", str(config))
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag.dags["firn_transforms"]

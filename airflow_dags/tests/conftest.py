"""Shared setup for the DAG tests: a throwaway AIRFLOW_HOME and the firn binary.

Airflow reads its configuration when it is first imported, so this module points AIRFLOW_HOME
at a fresh temporary directory (SQLite metadata database, logs) before any test imports
Airflow: nothing touches ~/airflow. Run with the Airflow venv's pytest:
$(tests/scripts/airflow-env.sh) -m pytest airflow_dags/tests
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[1]
REPO_ROOT = DAGS_FOLDER.parent

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

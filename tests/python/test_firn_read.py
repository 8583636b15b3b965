"""Tests for firn_read.py, independent of the Rust code: pyiceberg itself writes the tables.

Run: $(tests/scripts/python-env.sh) -m pytest tests/python
The Postgres test runs when FIRN_TEST_POSTGRES_URL is set (tests/scripts/postgres.sh url) and is
skipped otherwise; it creates and drops its own database.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BinaryType,
    DateType,
    DecimalType,
    DoubleType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
)

READER = Path(__file__).with_name("firn_read.py")

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "tenant", StringType(), required=True),
    NestedField(3, "name", StringType(), required=False),
    NestedField(4, "amount", DecimalType(10, 2), required=False),
    NestedField(5, "day", DateType(), required=False),
    NestedField(6, "ts", TimestamptzType(), required=False),
    NestedField(7, "local_ts", TimestampType(), required=False),
    NestedField(8, "score", DoubleType(), required=False),
    NestedField(9, "raw", BinaryType(), required=False),
    NestedField(10, "tags", ListType(11, StringType(), element_required=False), required=False),
    NestedField(
        12,
        "addr",
        StructType(NestedField(13, "city", StringType(), required=False)),
        required=False,
    ),
    identifier_field_ids=[1, 2],
)

SPEC = PartitionSpec(
    PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="tenant"),
    PartitionField(source_id=6, field_id=1001, transform=DayTransform(), name="ts_day"),
)

UTC = dt.UTC


def arrow_rows(rows: list[dict]) -> pa.Table:
    schema = pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("tenant", pa.string(), nullable=False),
            pa.field("name", pa.string()),
            pa.field("amount", pa.decimal128(10, 2)),
            pa.field("day", pa.date32()),
            pa.field("ts", pa.timestamp("us", tz="UTC")),
            pa.field("local_ts", pa.timestamp("us")),
            pa.field("score", pa.float64()),
            pa.field("raw", pa.large_binary()),
            pa.field("tags", pa.large_list(pa.large_string())),
            pa.field("addr", pa.struct([pa.field("city", pa.large_string())])),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


BATCH1 = [
    {
        "id": 2,
        "tenant": "acme",
        "name": "bob",
        "amount": decimal.Decimal("12.50"),
        "day": dt.date(2024, 5, 1),
        "ts": dt.datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "local_ts": dt.datetime(2024, 5, 1, 14, 30),
        "score": 1.5,
        "raw": b"\x00\x01\xff",
        "tags": ["a", "b"],
        "addr": {"city": "Oslo"},
    },
    {
        "id": 1,
        "tenant": "acme",
        "name": None,
        "amount": None,
        "day": None,
        "ts": dt.datetime(2024, 5, 2, 0, 0, 1, tzinfo=UTC),
        "local_ts": None,
        "score": float("nan"),
        "raw": None,
        "tags": None,
        "addr": None,
    },
]

BATCH2 = [
    {
        "id": 10,
        "tenant": "globex",
        "name": "carol",
        "amount": decimal.Decimal("-0.05"),
        "day": dt.date(2024, 6, 30),
        "ts": dt.datetime(2024, 6, 30, 23, 59, 59, 123456, tzinfo=UTC),
        "local_ts": dt.datetime(2024, 6, 30, 1, 2, 3),
        "score": float("inf"),
        "raw": b"",
        "tags": [],
        "addr": {"city": None},
    },
]


def make_catalog(uri: str, warehouse: Path) -> SqlCatalog:
    return SqlCatalog("firn", uri=uri, warehouse=warehouse.as_uri())


def populate(catalog: SqlCatalog) -> dict:
    catalog.create_namespace("bronze")
    catalog.create_namespace("silver")
    table = catalog.create_table("bronze.orders", schema=SCHEMA, partition_spec=SPEC)
    catalog.create_table("silver.empty", schema=Schema(NestedField(1, "k", StringType(), required=False)))

    table.append(arrow_rows(BATCH1))
    s1 = table.current_snapshot().snapshot_id
    table.append(arrow_rows(BATCH2))
    table = catalog.load_table("bronze.orders")
    s2 = table.current_snapshot().snapshot_id
    table.manage_snapshots().create_tag(s1, "first").create_branch(s2, "audit").commit()
    return {"s1": s1, "s2": s2}


def run_reader(uri: str, warehouse: Path, *args: str, expect_ok: bool = True, name: str = "firn"):
    cmd = [
        sys.executable,
        str(READER),
        "--uri",
        uri,
        "--warehouse",
        warehouse.as_uri(),
        "--catalog-name",
        name,
        *args,
    ]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    if expect_ok:
        assert p.returncode == 0, f"{cmd} failed:\n{p.stderr}"
        return json.loads(p.stdout)
    assert p.returncode == 1, f"expected exit 1, got {p.returncode}\nstdout={p.stdout}\nstderr={p.stderr}"
    assert p.stdout == ""
    assert "error" in p.stderr
    return p.stderr


@pytest.fixture(scope="module")
def sqlite_catalog(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cat")
    db = tmp / "catalog.db"
    warehouse = tmp / "warehouse"
    warehouse.mkdir()
    uri = f"sqlite:///{db}"  # db is absolute, so this is the four-slash form
    ids = populate(make_catalog(uri, warehouse))
    return {"uri": uri, "db": db, "warehouse": warehouse, **ids}


def test_list(sqlite_catalog):
    c = sqlite_catalog
    out = run_reader(c["uri"], c["warehouse"], "list")
    assert out == {"namespaces": ["bronze", "silver"], "tables": ["bronze.orders", "silver.empty"]}


def test_list_with_plain_path_uri(sqlite_catalog):
    c = sqlite_catalog
    out = run_reader(str(c["db"]), c["warehouse"], "list")
    assert out["tables"] == ["bronze.orders", "silver.empty"]


def test_describe(sqlite_catalog):
    c = sqlite_catalog
    out = run_reader(c["uri"], c["warehouse"], "describe", "bronze.orders")
    assert out["identifier"] == "bronze.orders"
    assert out["format_version"] == 2
    assert out["metadata_location"].startswith(c["warehouse"].as_uri())

    fields = {f["name"]: f for f in out["schema"]["fields"]}
    assert [f["name"] for f in out["schema"]["fields"]] == [
        "id", "tenant", "name", "amount", "day", "ts", "local_ts", "score", "raw", "tags", "addr",
    ]  # fmt: skip
    assert fields["id"] == {"id": 1, "name": "id", "type": "long", "required": True}
    assert fields["amount"]["type"] == "decimal(10, 2)"
    assert fields["ts"]["type"] == "timestamptz"
    assert fields["local_ts"]["type"] == "timestamp"
    assert fields["name"]["required"] is False
    # create_table assigns fresh ids: top-level fields first, then nested ones
    assert {k: v for k, v in fields["tags"]["element"].items() if k != "id"} == {
        "name": "element",
        "type": "string",
        "required": False,
    }
    assert fields["addr"]["fields"][0]["id"] > 11
    assert fields["addr"]["fields"][0]["name"] == "city"
    assert out["schema"]["identifier_field_ids"] == [1, 2]

    spec = out["partition_spec"]["fields"]
    assert [(f["name"], f["source_name"], f["transform"]) for f in spec] == [
        ("tenant", "tenant", "identity"),
        ("ts_day", "ts", "day"),
    ]

    assert out["current_snapshot_id"] == c["s2"]
    snaps = out["snapshots"]
    assert [s["snapshot_id"] for s in snaps] == [c["s1"], c["s2"]]
    assert snaps[0]["parent_snapshot_id"] is None
    assert snaps[1]["parent_snapshot_id"] == c["s1"]
    assert all(s["operation"] == "append" for s in snaps)
    assert all(isinstance(s["timestamp_ms"], int) for s in snaps)
    assert snaps[0]["summary"]["operation"] == "append"
    assert snaps[0]["summary"]["added-records"] == "2"
    assert snaps[1]["summary"]["total-records"] == "3"

    assert out["refs"]["main"] == {"snapshot_id": c["s2"], "type": "branch"}
    assert out["refs"]["first"] == {"snapshot_id": c["s1"], "type": "tag"}
    assert out["refs"]["audit"] == {"snapshot_id": c["s2"], "type": "branch"}


def test_describe_empty_table(sqlite_catalog):
    c = sqlite_catalog
    out = run_reader(c["uri"], c["warehouse"], "describe", "silver.empty")
    assert out["current_snapshot_id"] is None
    assert out["snapshots"] == []
    assert out["refs"] == {}
    assert out["partition_spec"]["fields"] == []


def test_scan_count(sqlite_catalog):
    c = sqlite_catalog
    out = run_reader(c["uri"], c["warehouse"], "scan", "bronze.orders")
    assert out["row_count"] == 3
    assert out["snapshot_id"] == c["s2"]
    assert "rows" not in out


def test_scan_rows_rendering_and_order(sqlite_catalog):
    c = sqlite_catalog
    out = run_reader(c["uri"], c["warehouse"], "scan", "bronze.orders", "--rows")
    assert out["row_count"] == 3
    assert [r["id"] for r in out["rows"]] == [1, 2, 10]  # sorted numerically, not as text
    r1, r2, r10 = out["rows"]
    assert r2 == {
        "id": 2,
        "tenant": "acme",
        "name": "bob",
        "amount": "12.50",
        "day": "2024-05-01",
        "ts": "2024-05-01T12:30:00+00:00",
        "local_ts": "2024-05-01T14:30:00",
        "score": 1.5,
        "raw": "AAH/",
        "tags": ["a", "b"],
        "addr": {"city": "Oslo"},
    }
    assert r1["name"] is None and r1["amount"] is None and r1["score"] == "NaN"
    assert r10["amount"] == "-0.05"
    assert r10["ts"] == "2024-06-30T23:59:59.123456+00:00"
    assert r10["score"] == "Infinity"
    assert r10["raw"] == "" and r10["tags"] == [] and r10["addr"] == {"city": None}


def test_scan_is_deterministic(sqlite_catalog):
    c = sqlite_catalog
    cmd = [sys.executable, str(READER), "--uri", c["uri"], "scan", "bronze.orders", "--rows"]
    a = subprocess.run(cmd, capture_output=True, check=True).stdout
    b = subprocess.run(cmd, capture_output=True, check=True).stdout
    assert a == b


def test_scan_columns_and_filter(sqlite_catalog):
    c = sqlite_catalog
    out = run_reader(
        c["uri"],
        c["warehouse"],
        "scan",
        "bronze.orders",
        "--rows",
        "--columns",
        "tenant,id",
        "--filter",
        "tenant = 'acme'",
    )
    assert out["row_count"] == 2
    assert out["rows"] == [{"tenant": "acme", "id": 1}, {"tenant": "acme", "id": 2}]
    out = run_reader(c["uri"], c["warehouse"], "scan", "bronze.orders", "--filter", "id >= 2")
    assert out["row_count"] == 2


def test_scan_time_travel(sqlite_catalog):
    c = sqlite_catalog
    out = run_reader(c["uri"], c["warehouse"], "scan", "bronze.orders", "--snapshot-id", str(c["s1"]), "--rows")
    assert out["snapshot_id"] == c["s1"]
    assert [r["id"] for r in out["rows"]] == [1, 2]
    out = run_reader(c["uri"], c["warehouse"], "scan", "bronze.orders", "--ref", "first")
    assert out == {"row_count": 2, "snapshot_id": c["s1"], "columns": out["columns"]}
    out = run_reader(c["uri"], c["warehouse"], "scan", "bronze.orders", "--ref", "audit")
    assert out["row_count"] == 3


def test_scan_empty_table(sqlite_catalog):
    c = sqlite_catalog
    out = run_reader(c["uri"], c["warehouse"], "scan", "silver.empty", "--rows")
    assert out == {"row_count": 0, "snapshot_id": None, "columns": ["k"], "rows": []}


def test_errors(sqlite_catalog, tmp_path):
    c = sqlite_catalog
    err = run_reader(c["uri"], c["warehouse"], "describe", "bronze.nope", expect_ok=False)
    assert "NoSuchTable" in err
    err = run_reader(c["uri"], c["warehouse"], "scan", "bronze.orders", "--ref", "nope", expect_ok=False)
    assert "no ref 'nope'" in err
    err = run_reader(c["uri"], c["warehouse"], "scan", "bronze.orders", "--snapshot-id", "42", expect_ok=False)
    assert "no snapshot 42" in err
    missing = tmp_path / "missing.db"
    err = run_reader(f"sqlite:///{missing}", c["warehouse"], "list", expect_ok=False)
    assert "not found" in err
    assert not missing.exists(), "the reader must not create a catalog database"
    err = run_reader(c["uri"], c["warehouse"], "bogus-command", expect_ok=False)
    # another catalog name sees no tables in the same database
    out = run_reader(c["uri"], c["warehouse"], "list", name="other")
    assert out == {"namespaces": [], "tables": []}


def test_notebook_readers(sqlite_catalog):
    """polars and duckdb, the notebook tools, read the same table through pyiceberg."""
    import duckdb
    import polars as pl

    c = sqlite_catalog
    table = make_catalog(c["uri"], c["warehouse"]).load_table("bronze.orders")
    df = table.scan().to_polars()
    assert df.height == 3
    assert sorted(df["id"].to_list()) == [1, 2, 10]
    assert isinstance(df, pl.DataFrame)
    con = table.scan(selected_fields=("tenant",)).to_duckdb("orders")
    assert con.execute("SELECT tenant, count(*) FROM orders GROUP BY 1 ORDER BY 1").fetchall() == [
        ("acme", 2),
        ("globex", 1),
    ]
    assert duckdb.__version__


@pytest.fixture
def postgres_db():
    base = os.environ.get("FIRN_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("FIRN_TEST_POSTGRES_URL not set (tests/scripts/postgres.sh start && ... url)")
    import psycopg2

    admin_url = base.replace("postgres://", "postgresql://", 1)
    name = f"firn_read_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    prefix, _, _ = base.rpartition("/")
    try:
        yield f"{prefix}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def test_postgres_catalog(postgres_db, tmp_path):
    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    sa_url = postgres_db.replace("postgres://", "postgresql+psycopg2://", 1)
    ids = populate(make_catalog(sa_url, warehouse))
    # the reader takes the sqlx/libpq form (what Rust tests have) as well as SQLAlchemy's
    for uri in (postgres_db, sa_url):
        out = run_reader(uri, warehouse, "list")
        assert out["tables"] == ["bronze.orders", "silver.empty"]
    out = run_reader(postgres_db, warehouse, "describe", "bronze.orders")
    assert out["current_snapshot_id"] == ids["s2"]
    out = run_reader(postgres_db, warehouse, "scan", "bronze.orders", "--ref", "first", "--rows")
    assert [r["id"] for r in out["rows"]] == [1, 2]

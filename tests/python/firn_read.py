#!/usr/bin/env python3
"""firn_read: an independent reader for firn's Iceberg tables, built on pyiceberg's SqlCatalog.

The Rust tests call it as a subprocess to check what the Rust writer committed with a second,
unrelated Iceberg implementation; people use it to look at a catalog. It never writes to the
catalog (it even refuses to create the catalog tables when they are missing).

Usage:
    firn_read.py --uri URI [--warehouse URL] [--catalog-name firn] [--prop k=v ...] COMMAND

    list                          {"namespaces": ["bronze", ...], "tables": ["bronze.orders", ...]}
    describe TABLE                schema, partition spec, snapshots, refs (see describe())
    scan TABLE [--snapshot-id N | --ref NAME] [--rows] [--columns a,b] [--filter "col = 'x'"]
                                  {"row_count": N, "snapshot_id": S, "columns": [...],
                                   "rows": [...]}   ("rows" only with --rows)

URI forms accepted by --uri:
    sqlite:////abs/path/catalog.db           SQLAlchemy form (four slashes = absolute path)
    /abs/path/catalog.db or rel/catalog.db   a plain path: a SQLite catalog file
    postgres://user@host:port/db             sqlx / libpq form, read with psycopg2
    postgresql://... , postgresql+psycopg2://...
A SQLite catalog file must already exist (a typo must not silently read an empty catalog).

Output: exactly one JSON document on stdout. Errors: a message on stderr, exit code 1.

Row values in `scan --rows` are rendered as JSON:
    int/bool/str       as is;  float: as is, but NaN/Infinity/-Infinity as strings
    decimal            string, with the column's scale ("12.50")
    date, time         ISO 8601 ("2024-05-01", "12:30:00")
    timestamp          ISO 8601 without offset ("2024-05-01T12:30:00")
    timestamptz        ISO 8601 in UTC with offset ("2024-05-01T12:30:00+00:00")
    binary/fixed       base64 (standard alphabet, padded)
    uuid               canonical string
    struct             object;  list: array;  map: array of {"key": k, "value": v}
Rows are sorted by all selected columns in column order (nulls first), so the output of two
reads of the same snapshot is byte-identical.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import decimal
import json
import math
import os
import sys
import uuid
from typing import Any, NoReturn


class ReadError(Exception):
    """An error meant for the user: printed without a traceback."""


# --------------------------------------------------------------------------------------------
# Arguments


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would exit 2; the contract says 1
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="firn_read.py", description="Read firn's Iceberg tables with pyiceberg.")
    p.add_argument("--uri", required=True, help="catalog database (SQLAlchemy URI, postgres:// URL or SQLite path)")
    p.add_argument("--warehouse", help="warehouse location, e.g. file:///abs/warehouse or s3://bucket/prefix")
    p.add_argument("--catalog-name", default="firn", help="catalog_name in iceberg_tables (default: firn)")
    p.add_argument(
        "--prop",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra catalog/FileIO property, e.g. s3.endpoint=http://127.0.0.1:5000 (repeatable)",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="all namespaces and tables")

    d = sub.add_parser("describe", help="schema, partition spec, snapshots and refs of a table")
    d.add_argument("table", help="namespace.table, e.g. bronze.orders")

    s = sub.add_parser("scan", help="count (and optionally dump) the rows of a table")
    s.add_argument("table", help="namespace.table, e.g. bronze.orders")
    at = s.add_mutually_exclusive_group()
    at.add_argument("--snapshot-id", type=int, help="read this snapshot (time travel)")
    at.add_argument("--ref", help="read the snapshot a branch or tag points to")
    s.add_argument("--rows", action="store_true", help="include the rows in the output")
    s.add_argument("--columns", help="comma-separated columns to select (default: all)")
    s.add_argument("--filter", dest="row_filter", help="pyiceberg row filter, e.g. \"tenant = 'acme'\"")

    return p.parse_args(argv)


def parse_props(pairs: list[str]) -> dict[str, str]:
    props: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ReadError(f"--prop expects KEY=VALUE, got {pair!r}")
        props[key] = value
    return props


def normalize_uri(uri: str) -> str:
    """Turn the URI forms we accept into a SQLAlchemy URL."""
    if uri.startswith("postgres://"):
        return "postgresql+psycopg2://" + uri[len("postgres://") :]
    if uri.startswith("postgresql://"):
        return "postgresql+psycopg2://" + uri[len("postgresql://") :]
    if "://" not in uri and not uri.startswith("sqlite:"):
        return "sqlite:///" + os.path.abspath(uri)
    return uri


def check_sqlite_exists(uri: str) -> None:
    if not uri.startswith("sqlite:"):
        return
    rest = uri[len("sqlite:") :]
    if not rest.startswith("///"):
        return  # sqlite:// (in-memory) or something exotic: let SQLAlchemy judge
    path = rest[3:].split("?", 1)[0]
    if path in ("", ":memory:"):
        return
    if not os.path.isfile(path):
        raise ReadError(f"SQLite catalog database not found: {path} (from --uri {uri})")


def open_catalog(args: argparse.Namespace):
    from pyiceberg.catalog import load_catalog

    uri = normalize_uri(args.uri)
    check_sqlite_exists(uri)
    props: dict[str, str] = {"type": "sql", "uri": uri, "init_catalog_tables": "false"}
    if args.warehouse:
        props["warehouse"] = args.warehouse
    props.update(parse_props(args.prop))
    return load_catalog(args.catalog_name, **props)


# --------------------------------------------------------------------------------------------
# Commands


def cmd_list(catalog) -> dict[str, Any]:
    namespaces: list[str] = []
    tables: list[str] = []

    def walk(parent: tuple[str, ...]) -> None:
        for ns in catalog.list_namespaces(parent):
            ns = tuple(ns)
            if ns == parent or ".".join(ns) in namespaces:
                continue
            namespaces.append(".".join(ns))
            for ident in catalog.list_tables(ns):
                tables.append(".".join(ident))
            walk(ns)

    walk(())
    return {"namespaces": sorted(namespaces), "tables": sorted(set(tables))}


def _field_json(field) -> dict[str, Any]:
    from pyiceberg.types import ListType, MapType, StructType

    out: dict[str, Any] = {
        "id": field.field_id,
        "name": field.name,
        "type": str(field.field_type),
        "required": bool(field.required),
    }
    if field.doc:
        out["doc"] = field.doc
    t = field.field_type
    if isinstance(t, StructType):
        out["fields"] = [_field_json(f) for f in t.fields]
    elif isinstance(t, ListType):
        out["element"] = _field_json(t.element_field)
    elif isinstance(t, MapType):
        out["key"] = _field_json(t.key_field)
        out["value"] = _field_json(t.value_field)
    return out


def _summary_json(summary) -> dict[str, str] | None:
    if summary is None:
        return None
    return {"operation": str(summary.operation.value), **dict(summary.additional_properties)}


def describe(catalog, name: str) -> dict[str, Any]:
    table = catalog.load_table(name)
    md = table.metadata
    schema = table.schema()
    spec = table.spec()
    current = table.current_snapshot()

    def source_name(source_id: int) -> str | None:
        try:
            return schema.find_column_name(source_id)
        except ValueError:
            return None

    snapshots = []
    for s in sorted(md.snapshots, key=lambda s: (s.sequence_number or 0, s.timestamp_ms, s.snapshot_id)):
        summary = _summary_json(s.summary)
        snapshots.append(
            {
                "snapshot_id": s.snapshot_id,
                "parent_snapshot_id": s.parent_snapshot_id,
                "sequence_number": s.sequence_number,
                "timestamp_ms": s.timestamp_ms,
                "operation": summary["operation"] if summary else None,
                "schema_id": s.schema_id,
                "manifest_list": s.manifest_list,
                "summary": summary,
            }
        )

    refs = {}
    for ref_name, ref in sorted(md.refs.items()):
        r: dict[str, Any] = {"snapshot_id": ref.snapshot_id, "type": str(ref.snapshot_ref_type.value)}
        for attr in ("max_ref_age_ms", "max_snapshot_age_ms", "min_snapshots_to_keep"):
            v = getattr(ref, attr, None)
            if v is not None:
                r[attr] = v
        refs[ref_name] = r

    return {
        "identifier": ".".join(table.name()),
        "format_version": md.format_version,
        "table_uuid": str(md.table_uuid),
        "location": md.location,
        "metadata_location": table.metadata_location,
        "last_sequence_number": md.last_sequence_number,
        "last_updated_ms": md.last_updated_ms,
        "properties": dict(sorted(md.properties.items())),
        "schema": {
            "schema_id": schema.schema_id,
            "identifier_field_ids": list(schema.identifier_field_ids),
            "fields": [_field_json(f) for f in schema.fields],
        },
        "partition_spec": {
            "spec_id": spec.spec_id,
            "fields": [
                {
                    "field_id": f.field_id,
                    "name": f.name,
                    "source_id": f.source_id,
                    "source_name": source_name(f.source_id),
                    "transform": str(f.transform),
                }
                for f in spec.fields
            ],
        },
        "sort_order": {
            "order_id": table.sort_order().order_id,
            "fields": [
                {
                    "source_id": f.source_id,
                    "transform": str(f.transform),
                    "direction": str(f.direction.value),
                    "null_order": str(f.null_order.value),
                }
                for f in table.sort_order().fields
            ],
        },
        "current_snapshot_id": current.snapshot_id if current else None,
        "snapshots": snapshots,
        "refs": refs,
    }


def _resolve_snapshot(table, snapshot_id: int | None, ref: str | None) -> int | None:
    if ref is not None:
        r = table.metadata.refs.get(ref)
        if r is None:
            raise ReadError(f"no ref {ref!r} in {'.'.join(table.name())} (refs: {sorted(table.metadata.refs)})")
        return r.snapshot_id
    if snapshot_id is not None:
        if table.snapshot_by_id(snapshot_id) is None:
            raise ReadError(f"no snapshot {snapshot_id} in {'.'.join(table.name())}")
        return snapshot_id
    current = table.current_snapshot()
    return current.snapshot_id if current else None


def scan(
    catalog,
    name: str,
    snapshot_id: int | None = None,
    ref: str | None = None,
    rows: bool = False,
    columns: str | None = None,
    row_filter: str | None = None,
) -> dict[str, Any]:
    table = catalog.load_table(name)
    snap = _resolve_snapshot(table, snapshot_id, ref)

    selected: tuple[str, ...] = ("*",)
    if columns:
        selected = tuple(c.strip() for c in columns.split(",") if c.strip())
        if not selected:
            raise ReadError("--columns is empty")

    kwargs: dict[str, Any] = {"selected_fields": selected}
    if row_filter:
        kwargs["row_filter"] = row_filter
    if snap is not None:
        kwargs["snapshot_id"] = snap
    data_scan = table.scan(**kwargs)
    out_columns = [f.name for f in data_scan.projection().fields]

    if snap is None:
        # A table with no snapshot has no rows.
        doc: dict[str, Any] = {"row_count": 0, "snapshot_id": None, "columns": out_columns}
        if rows:
            doc["rows"] = []
        return doc

    if not rows:
        # Count by reading the data files (applying deletes), not from manifest record counts:
        # the point of this reader is to check what the writer wrote.
        count = 0
        for batch in data_scan.to_arrow_batch_reader():
            count += batch.num_rows
        return {"row_count": count, "snapshot_id": snap, "columns": out_columns}

    arrow = data_scan.to_arrow()
    out_columns = list(arrow.column_names)
    py_rows = arrow.to_pylist()
    py_rows.sort(key=lambda r: tuple(_sort_key(r[c]) for c in out_columns))
    rendered = [{c: render(r[c]) for c in out_columns} for r in py_rows]
    return {"row_count": len(rendered), "snapshot_id": snap, "columns": out_columns, "rows": rendered}


# --------------------------------------------------------------------------------------------
# Value rendering and ordering


def render(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dict):
        return {k: render(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        # pyarrow renders map values as lists of (key, value) tuples
        if v and all(isinstance(x, tuple) and len(x) == 2 for x in v):
            return [{"key": render(k), "value": render(x)} for k, x in v]
        return [render(x) for x in v]
    return str(v)


def _sort_key(v: Any) -> tuple:
    if v is None:
        return (0,)
    if isinstance(v, float) and math.isnan(v):
        return (2,)
    if isinstance(v, (bool, int, float, decimal.Decimal, str, bytes, dt.date, dt.time, dt.timedelta)):
        return (1, v)
    if isinstance(v, uuid.UUID):
        return (1, str(v))
    return (1, json.dumps(render(v), sort_keys=True))


# --------------------------------------------------------------------------------------------


def run(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    catalog = open_catalog(args)
    if args.command == "list":
        return cmd_list(catalog)
    if args.command == "describe":
        return describe(catalog, args.table)
    if args.command == "scan":
        return scan(
            catalog,
            args.table,
            snapshot_id=args.snapshot_id,
            ref=args.ref,
            rows=args.rows,
            columns=args.columns,
            row_filter=args.row_filter,
        )
    raise ReadError(f"unknown command {args.command!r}")


def main(argv: list[str] | None = None) -> int:
    try:
        doc = run(argv)
    except ReadError as e:
        print(f"firn_read.py: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - one JSON doc or an error line, nothing in between
        if os.environ.get("FIRN_READ_TRACEBACK"):
            import traceback

            traceback.print_exc()
        print(f"firn_read.py: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump(doc, sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

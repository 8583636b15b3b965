"""Bronze data for the silver benchmark (docs/benchmarks.md): appends synthetic change events
to firn's `bronze.<table>` through pyiceberg (one snapshot per call), in bronze's schema and
partitioning (tenant, day of source time), so that `firn transform silver` and the peers read
the same Parquet files.

Events: every key is inserted once (`c`), then updated (`u`) or deleted (`d`, 2 %) at random;
keys are spread over `--tenants` tenants (key k belongs to tenant k mod tenants); source
positions increase with the event number (one binlog), Kafka offsets per topic-partition too.
`--first-event` continues the numbering for a later append (the 1 % increment). Deterministic.
Prints one JSON line. Does I/O (catalog, files).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import polars as pl
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.types import DoubleType, LongType, StringType, TimestamptzType

START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
SPAN_US = 4 * 86_400 * 1_000_000  # events spread over four days
STATUSES = ["new", "paid", "shipped", "delivered", "returned"]


def events(first: int, count: int, keys: int, tenants: int, total: int, inserts: bool,
           only_tenants: int = 0) -> pl.DataFrame:
    """Events first..first+count. With `inserts`, the first `keys` events insert every key;
    with `only_tenants`, the events touch keys of the first `only_tenants` tenants only."""
    frame = pl.DataFrame({"i": pl.int_range(first, first + count, eager=True, dtype=pl.Int64)})
    mixed = (pl.col("i") * 2_654_435_761 + 97) % 1_000_003  # a cheap deterministic scramble
    key = (pl.col("i").hash(seed=7) % keys).cast(pl.Int64)
    if only_tenants:
        per_tenant = keys // tenants
        key = (pl.col("i").hash(seed=7) % per_tenant).cast(pl.Int64) * tenants + pl.col("i") % only_tenants
    is_insert = (pl.col("i") < keys) if inserts else pl.lit(False)
    frame = frame.with_columns(
        key=pl.when(is_insert).then(pl.col("i")).otherwise(key),
        op=pl.when(is_insert).then(pl.lit("c")).when(mixed % 50 == 0).then(pl.lit("d")).otherwise(pl.lit("u")),
    ).with_columns(
        tenant=pl.lit("t") + (pl.col("key") % tenants).cast(pl.String).str.zfill(3),
        id=pl.col("key") // tenants,
    )
    ts = (pl.lit(START_US) + pl.col("i") * (SPAN_US // total)).cast(pl.Datetime("us", "UTC"))
    frame = frame.with_columns(
        _firn_tenant=pl.col("tenant"),
        _firn_op=pl.col("op"),
        _firn_source_ts=ts,
        _firn_source_pos=pl.lit("mysql-bin.000001:") + pl.col("i").cast(pl.String).str.zfill(20) + pl.lit(":000000"),
        _firn_topic=pl.lit("cdc.") + pl.col("tenant") + pl.lit(".shop.events"),
        _firn_partition=(pl.col("id") % 2).cast(pl.Int32),
        _firn_ingested_at=ts,
        status=(mixed % len(STATUSES)).replace_strict(dict(enumerate(STATUSES)), return_dtype=pl.String),
        amount=(mixed % 100_000).cast(pl.Float64) / 100.0,
        note=pl.lit("note-") + (mixed * 31 % 999_983).cast(pl.String) + pl.lit("-") + pl.col("op"),
        updated_at=ts,
    )
    # Offsets count each topic-partition's events in order; a later append continues after
    # the events before it (`first` of them, spread evenly enough: offsets only order events
    # of one partition, and the appended events come after all earlier ones).
    frame = frame.with_columns(
        _firn_offset=(pl.int_range(pl.len()).over(["_firn_topic", "_firn_partition"]) + first).cast(pl.Int64)
    )
    return frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--table", default="events")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--keys", type=int, required=True)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--first-event", type=int, default=0)
    parser.add_argument("--total-events", type=int, default=0, help="spreads source time (default: --events)")
    parser.add_argument("--only-tenants", type=int, default=0, help="touch keys of this many tenants only")
    parser.add_argument("--catalog", default="catalog.db", help="SQLite catalog file in the warehouse")
    parser.add_argument("--chunk", type=int, default=2_000_000, help="events per append call")
    args = parser.parse_args()

    catalog = SqlCatalog("firn", uri=f"sqlite:///{args.warehouse}/{args.catalog}", warehouse=f"file://{args.warehouse}")
    table = catalog.load_table(("bronze", args.table))
    wanted = {"id": LongType(), "status": StringType(), "amount": DoubleType(), "note": StringType(),
              "updated_at": TimestamptzType()}
    missing = [name for name in wanted if name not in table.schema().column_names]
    if missing:
        with table.update_schema() as update:
            for name in missing:
                update.add_column(name, wanted[name])
        table = catalog.load_table(("bronze", args.table))
    schema = table.schema().as_arrow()
    total = args.total_events or args.events
    start = time.monotonic()
    # One transaction (one bronze snapshot) for all chunks, like one ingest commit.
    with table.transaction() as tx:
        for first in range(args.first_event, args.first_event + args.events, args.chunk):
            count = min(args.chunk, args.first_event + args.events - first)
            frame = events(first, count, args.keys, args.tenants, total, inserts=args.first_event == 0,
                            only_tenants=args.only_tenants)
            data = frame.select(schema.names).to_arrow()
            data = pa.Table.from_arrays([data.column(n).cast(schema.field(n).type) for n in schema.names], schema=schema)
            tx.append(data)
    table = catalog.load_table(("bronze", args.table))
    print(json.dumps({"snapshot_id": table.current_snapshot().snapshot_id, "events": args.events,
                      "seconds": round(time.monotonic() - start, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

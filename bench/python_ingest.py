"""The Python peer of `firn ingest` for the ingest benchmark (docs/benchmarks.md).

What a team would write without firn: confluent-kafka (librdkafka) reads every partition of
the CDC topics, each Debezium JSON message is decoded into the same bronze row firn writes
(source columns from `after`, or `before` for a delete; tenant, op, source timestamp, sortable
source position, topic, partition, offset, ingest time), Debezium re-emissions are dropped with
the same per-partition source-position watermark, and every table is appended with pyiceberg
(`table.append(pyarrow.Table)`, partitioned by tenant and day like bronze) once per commit
interval, with the Kafka offsets in the snapshot summary.

Stops after `--max-events` messages or when every partition reported end-of-partition.
Prints one JSON line with what it did. Does I/O (Kafka, files).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime, timezone

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, TopicPartition
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.transforms import DayTransform, IdentityTransform

TOPIC = re.compile(r"^cdc\.([A-Za-z_][A-Za-z0-9_]*)\.[A-Za-z_][A-Za-z0-9_]*\.([A-Za-z_]+)$")
META = [
    ("_firn_tenant", pa.string()),
    ("_firn_op", pa.string()),
    ("_firn_source_ts", pa.timestamp("us", tz="UTC")),
    ("_firn_source_pos", pa.string()),
    ("_firn_topic", pa.string()),
    ("_firn_partition", pa.int32()),
    ("_firn_offset", pa.int64()),
    ("_firn_ingested_at", pa.timestamp("us", tz="UTC")),
]
OPS = {"c", "u", "d", "r", "t"}


def source_position(source: dict) -> str | None:
    """Same sortable position as firn's debezium::source_position."""
    file, pos = source.get("file"), source.get("pos")
    if isinstance(file, str) and isinstance(pos, int):
        return f"{file}:{pos:020}:{source.get('row') or 0:06}"
    lsn = source.get("lsn")
    if isinstance(lsn, int):
        last_commit = 0
        sequence = source.get("sequence")
        if isinstance(sequence, str):
            try:
                first = json.loads(sequence)[0]
                last_commit = int(first) if first is not None else 0
            except (ValueError, IndexError, TypeError):
                last_commit = 0
        return f"{last_commit:020}:{lsn:020}"
    ts, ord_ = source.get("ts_ms"), source.get("ord")
    if isinstance(ts, int) and isinstance(ord_, int):
        return f"{ts:020}:{ord_:010}"
    return None


class Watermarks:
    """firn's dedup: per partition, the highest source position and the (key, op) at it."""

    def __init__(self) -> None:
        self.marks: dict[tuple[str, int], tuple[str, set]] = {}

    def admit(self, tp: tuple[str, int], position: str | None, key_op: bytes) -> bool:
        if position is None:
            return True
        mark = self.marks.get(tp)
        if mark is None or position > mark[0]:
            self.marks[tp] = (position, {key_op})
            return True
        if position < mark[0]:
            return False
        if key_op in mark[1]:
            return False
        mark[1].add(key_op)
        return True


def decode(topic: str, partition: int, offset: int, key: bytes | None, value: bytes, now_us: int):
    """One Debezium JSON message → (table, bronze row dict, dedup key) or None for skips."""
    match = TOPIC.match(topic)
    if match is None:
        raise ValueError(f"topic {topic} matches no source")
    tenant, table = match.group(1), match.group(2)
    envelope = json.loads(value)
    if "schema" in envelope and "payload" in envelope:
        envelope = envelope["payload"]
    op = envelope.get("op")
    if op not in OPS:
        raise ValueError(f"not a Debezium envelope: op {op!r}")
    source = envelope.get("source") or {}
    row = envelope.get("before" if op == "d" else "after") or {}
    if isinstance(row, str):  # MongoDB documents are JSON strings
        row = json.loads(row)
    ts_ms = source.get("ts_ms") or envelope.get("ts_ms")
    out = dict(row)
    out["_firn_tenant"] = tenant
    out["_firn_op"] = op
    out["_firn_source_ts"] = ts_ms * 1000 if ts_ms is not None else None
    position = source_position(source)
    out["_firn_source_pos"] = position
    out["_firn_topic"] = topic
    out["_firn_partition"] = partition
    out["_firn_offset"] = offset
    out["_firn_ingested_at"] = now_us
    return table, out, position, (key or b"") + op.encode()


def arrow_table(rows: list[dict]) -> pa.Table:
    """Rows → Arrow with the metadata columns typed and source columns inferred (schemaless)."""
    columns: dict[str, list] = {}
    for row in rows:
        for name in row:
            if name not in columns:
                columns[name] = []
    names = list(columns)
    arrays, fields = [], []
    meta_types = dict(META)
    for name in names:
        values = [row.get(name) for row in rows]
        if name in meta_types:
            array = pa.array(values, type=pa.int64() if meta_types[name] == pa.timestamp("us", tz="UTC") else meta_types[name])
            if meta_types[name] == pa.timestamp("us", tz="UTC"):
                array = array.cast(meta_types[name])
        else:
            array = pa.array(values)
            if pa.types.is_null(array.type):
                array = array.cast(pa.string())
        arrays.append(array)
        fields.append(pa.field(name, array.type, nullable=True))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--warehouse", required=True, help="directory for catalog.db and data")
    parser.add_argument("--max-events", type=int, default=0, help="stop after this many messages (0: all)")
    parser.add_argument("--commit-interval", type=float, default=10.0, help="seconds")
    parser.add_argument("--max-records", type=int, default=1_000_000, help="rows per table per commit")
    args = parser.parse_args()

    catalog = SqlCatalog(
        "bench",
        uri=f"sqlite:///{args.warehouse}/catalog.db",
        warehouse=f"file://{args.warehouse}",
    )
    catalog.create_namespace_if_not_exists("bronze")

    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": f"python-bench-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    metadata = consumer.list_topics(timeout=10)
    partitions = [
        TopicPartition(name, p, 0)
        for name, topic in sorted(metadata.topics.items())
        if TOPIC.match(name)
        for p in sorted(topic.partitions)
    ]
    consumer.assign(partitions)
    remaining = {(tp.topic, tp.partition) for tp in partitions}

    marks = Watermarks()
    pending: dict[str, list[dict]] = {}
    offsets: dict[str, dict[str, dict[int, int]]] = {}
    tables = {}
    consumed = tombstones = duplicates = written = commits = 0
    cycle_start = time.monotonic()

    def commit_all() -> None:
        nonlocal written, commits
        for name, rows in pending.items():
            if not rows:
                continue
            data = arrow_table(rows)
            table = tables.get(name)
            if table is None:
                ident = ("bronze", name)
                if catalog.table_exists(ident):
                    table = catalog.load_table(ident)
                else:
                    # Bronze's layout: partitioned by tenant and day of source time.
                    table = catalog.create_table(ident, schema=data.schema)
                    with table.update_spec() as spec:
                        spec.add_field("_firn_tenant", IdentityTransform(), "tenant")
                        spec.add_field("_firn_source_ts", DayTransform(), "source_day")
                tables[name] = table
            if not set(data.schema.names) <= set(table.schema().column_names):
                with table.update_schema() as update:
                    update.union_by_name(data.schema)
            summary = {"firn.kafka-offsets": json.dumps(offsets.get(name, {}), sort_keys=True)}
            table.append(data, snapshot_properties=summary)
            written += len(rows)
            commits += 1
        pending.clear()

    start = time.monotonic()
    while remaining and (args.max_events == 0 or consumed < args.max_events):
        batch = consumer.consume(num_messages=5000, timeout=0.2)
        now_us = int(datetime.now(timezone.utc).timestamp() * 1_000_000)
        for message in batch:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard((message.topic(), message.partition()))
                    continue
                raise RuntimeError(str(error))
            if args.max_events and consumed >= args.max_events:
                break
            consumed += 1
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            value = message.value()
            table_name = TOPIC.match(topic).group(2)
            offsets.setdefault(table_name, {}).setdefault(topic, {})[str(partition)] = offset + 1
            if value is None:
                tombstones += 1
                continue
            table_name, row, position, key_op = decode(topic, partition, offset, message.key(), value, now_us)
            if not marks.admit((topic, partition), position, key_op):
                duplicates += 1
                continue
            pending.setdefault(table_name, []).append(row)
        if time.monotonic() - cycle_start >= args.commit_interval or any(
            len(rows) >= args.max_records for rows in pending.values()
        ):
            commit_all()
            cycle_start = time.monotonic()
    commit_all()
    elapsed = time.monotonic() - start
    consumer.close()
    print(
        json.dumps(
            {
                "records_consumed": consumed,
                "tombstones": tombstones,
                "duplicates_dropped": duplicates,
                "rows_written": written,
                "commits": commits,
                "seconds": round(elapsed, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

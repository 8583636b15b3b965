"""Freshness of a bronze warehouse after bench/freshness.sh: for every row, the time its data
file became visible (the commit timestamp of the snapshot that added the file) minus its
source time (stamped with the produce time by bench/steady_producer.py). Prints one JSON line
with p50/p90/p99/max in seconds. Reads the SQLite catalog and Parquet files (I/O).
"""

from __future__ import annotations

import json
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog

TABLES = ["customers", "products", "orders", "order_items"]


def main() -> int:
    warehouse = sys.argv[1]
    catalog = SqlCatalog("firn", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}")
    lags = []
    snapshots = 0
    for name in TABLES:
        table = catalog.load_table(("bronze", name))
        committed_ms = {s.snapshot_id: s.timestamp_ms for s in table.metadata.snapshots}
        snapshots += len(committed_ms)
        entries = table.inspect.entries().to_pylist()
        for entry in entries:
            if entry["status"] != 1:  # 1 = ADDED by that snapshot
                continue
            path = entry["data_file"]["file_path"].removeprefix("file://")
            source_ts = pq.read_table(path, columns=["_firn_source_ts"]).column(0)
            visible = committed_ms[entry["snapshot_id"]] / 1e3
            lags.extend(visible - us / 1e6 for us in pc.cast(source_ts, pa.int64()).to_pylist())
    lags.sort()
    if not lags:
        print(json.dumps({"rows": 0}))
        return 1

    def q(p: float) -> float:
        return round(lags[min(len(lags) - 1, int(p * len(lags)))], 3)

    print(json.dumps({"rows": len(lags), "snapshots": snapshots, "p50_s": q(0.50), "p90_s": q(0.90),
                      "p99_s": q(0.99), "max_s": round(lags[-1], 3), "min_s": round(lags[0], 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

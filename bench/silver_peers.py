"""The peers of `firn transform silver --full` in the silver benchmark (docs/benchmarks.md):
DuckDB, polars and PySpark (local mode) compute silver with firn's semantics
(transforms/src/silver.rs) from the same bronze Parquet files:

- the latest event per (tenant, key) by (source position, missing first; Kafka offset;
  topic; partition), newest first;
- keys whose latest event is a delete (`d`) removed;
- the newest truncate (`t`) of a tenant removes that tenant's keys whose latest event
  precedes it;
- output: `tenant`, the source columns, then `_firn_source_ts`, `_firn_source_pos`,
  `_firn_topic`, `_firn_partition`, `_firn_offset`; written as zstd Parquet partitioned by
  tenant (firn writes Iceberg files partitioned by tenant).

Usage: silver_peers.py ENGINE FILES_LIST OUT_DIR KEY[,KEY...]. Prints one JSON line with the
row count. Does I/O (files).
"""

from __future__ import annotations

import json
import os
import sys
import time

import pyarrow.parquet as pq

LINEAGE = ["_firn_source_ts", "_firn_source_pos", "_firn_topic", "_firn_partition", "_firn_offset"]


def sql(source: str, keys: list[str], sources: list[str], qualify: bool) -> str:
    """The latest-per-key query over relation `source` (DuckDB and Spark SQL)."""
    order = ("coalesce(_firn_source_pos, '') DESC, _firn_offset DESC, _firn_topic DESC, "
             "_firn_partition DESC")
    by_key = ", ".join(["_firn_tenant"] + keys)

    def newest(where: str, partition: str) -> str:
        rank = f"row_number() OVER (PARTITION BY {partition} ORDER BY {order})"
        if qualify:
            return f"SELECT * FROM {source} WHERE {where} QUALIFY {rank} = 1"
        return f"SELECT * FROM (SELECT *, {rank} AS rn FROM {source} WHERE {where}) WHERE rn = 1"

    columns = ", ".join(["l._firn_tenant AS tenant"] + [f"l.{c}" for c in sources + LINEAGE])
    return f"""
WITH latest AS ({newest("_firn_op <> 't'", by_key)}),
truncates AS (
  SELECT _firn_tenant AS tt, coalesce(_firn_source_pos, '') AS tpos, _firn_offset AS toff
  FROM ({newest("_firn_op = 't'", "_firn_tenant")})
)
SELECT {columns}
FROM latest l LEFT JOIN truncates t ON t.tt = l._firn_tenant
WHERE (t.tt IS NULL OR coalesce(l._firn_source_pos, '') > t.tpos
       OR (coalesce(l._firn_source_pos, '') = t.tpos AND l._firn_offset > t.toff))
  AND l._firn_op <> 'd'
"""


def run_duckdb(files: list[str], out: str, keys: list[str], sources: list[str]) -> int:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{out}.spill'")
    listed = ", ".join(f"'{f}'" for f in files)
    con.execute(f"CREATE VIEW bronze AS SELECT * FROM read_parquet([{listed}])")
    query = sql("bronze", keys, sources, qualify=True)
    con.execute(f"COPY ({query}) TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (tenant))")
    return con.execute(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')").fetchone()[0]


def run_polars(files: list[str], out: str, keys: list[str], sources: list[str]) -> int:
    import polars as pl

    bronze = pl.scan_parquet(files)
    pos = pl.col("_firn_source_pos").fill_null("")
    order = [pos, pl.col("_firn_offset"), pl.col("_firn_topic"), pl.col("_firn_partition")]

    def newest(frame: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
        return frame.sort(order, descending=True).unique(subset=by, keep="first")

    latest = newest(bronze.filter(pl.col("_firn_op") != "t"), ["_firn_tenant"] + keys)
    truncates = newest(bronze.filter(pl.col("_firn_op") == "t"), ["_firn_tenant"]).select(
        pl.col("_firn_tenant"), pos.alias("tpos"), pl.col("_firn_offset").alias("toff")
    )
    result = (
        latest.join(truncates, on="_firn_tenant", how="left")
        .filter(
            pl.col("tpos").is_null()
            | (pos > pl.col("tpos"))
            | ((pos == pl.col("tpos")) & (pl.col("_firn_offset") > pl.col("toff")))
        )
        .filter(pl.col("_firn_op") != "d")
        .select([pl.col("_firn_tenant").alias("tenant")] + sources + LINEAGE)
        .collect()
    )
    os.makedirs(out, exist_ok=True)
    result.write_parquet(out, compression="zstd", partition_by="tenant")
    return result.height


def run_spark(files: list[str], out: str, keys: list[str], sources: list[str]) -> int:
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(f"local[{os.cpu_count()}]")
        .appName("firn-silver-bench")
        .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.sql.shuffle.partitions", str(4 * (os.cpu_count() or 1)))
        .config("spark.sql.parquet.compression.codec", "zstd")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    spark.read.parquet(*[f"file://{f}" for f in files]).createOrReplaceTempView("bronze")
    result = spark.sql(sql("bronze", keys, sources, qualify=False))
    result.write.partitionBy("tenant").parquet(f"file://{out}")
    rows = spark.read.parquet(f"file://{out}").count()
    spark.stop()
    return rows


def main() -> int:
    engine, files_list, out, keys = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
    files = [line.strip().removeprefix("file://") for line in open(files_list) if line.strip()]
    names = pq.read_schema(files[0]).names
    sources = [n for n in names if not n.startswith("_firn_")]
    start = time.monotonic()
    rows = {"duckdb": run_duckdb, "polars": run_polars, "spark": run_spark}[engine](files, out, keys, sources)
    print(json.dumps({"engine": engine, "rows": rows, "files": len(files),
                      "seconds": round(time.monotonic() - start, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

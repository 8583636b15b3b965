"""Report of one phase of bench/relay.sh (docs/benchmarks.md), from the files the script left
in the phase's directory: the relay's /usr/bin/time -v report (relay.time), its --json report
(relay.out, throughput only), and the Stream Load test server's control API answers
(txns.json, rows.json, clock.json).

  relay_report.py throughput DIR   hot rows loaded per CPU-second of the relay, and checks:
      no label VISIBLE twice, every label of the relay's report VISIBLE, the visible txns'
      rows equal the report's rows, the hot table equals order_facts computed from the
      generator's expected final orders and order_items (DIR/expected).
  relay_report.py latency DIR      event-to-visible latency: per hot row (visible time of the
      row's label on the test server − relay_version's time part, the produce time of the key's newest
      event) and per event from the relay's histogram (metrics.txt; bucket upper bounds).

Prints one JSON object; exits 1 when a check fails. Reads files only (I/O).
"""

from __future__ import annotations

import collections
import json
import re
import sys
from decimal import Decimal
from pathlib import Path


def resources(path: Path) -> dict:
    """wall_s, cpu_s (user + sys) and peak_rss_mib from a /usr/bin/time -v report."""
    fields = {}
    for line in path.read_text().splitlines():
        name, _, value = line.strip().rpartition(": ")
        fields[name] = value
    wall = 0.0
    for part in fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":"):
        wall = wall * 60 + float(part)
    cpu = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "peak_rss_mib": round(int(fields["Maximum resident set size (kbytes)"]) / 1024)}


def quantiles(values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {"n": 0}

    def q(p: float) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))], 3)

    return {"n": len(values), "p50_s": q(0.50), "p90_s": q(0.90), "p99_s": q(0.99),
            "max_s": round(values[-1], 3), "min_s": round(values[0], 3)}


def hot_txns(directory: Path) -> list[dict]:
    return [t for t in json.loads((directory / "txns.json").read_text())
            if t["db"] == "firn_hot" and t["table"] == "order_facts"]


def label_checks(txns: list[dict]) -> dict:
    visible = collections.Counter(t["label"] for t in txns if t["state"] == "VISIBLE")
    return {"txns": len(txns), "visible": sum(visible.values()),
            "labels_visible_twice": sorted(label for label, n in visible.items() if n > 1),
            "visible_rows": sum(t["loaded_rows"] for t in txns if t["state"] == "VISIBLE")}


def money(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def expected_order_facts(expected: Path) -> dict:
    """order_facts as sql/gold/order_facts.sql computes it, from the generator's final rows."""
    items = collections.defaultdict(lambda: [0, 0, Decimal(0)])
    for line in (expected / "order_items.jsonl").open():
        item = json.loads(line)
        row = item["row"]
        acc = items[(item["tenant"], row["order_id"])]
        acc[0] += 1
        acc[1] += row["quantity"]
        acc[2] += row["quantity"] * Decimal(row["unit_price"])
    facts = {}
    for line in (expected / "orders.jsonl").open():
        order = json.loads(line)
        row = order["row"]
        count, units, total = items.get((order["tenant"], row["id"]), (0, 0, Decimal(0)))
        ordered_at = row["ordered_at"].replace("T", " ").removesuffix("Z")
        facts[(order["tenant"], row["id"])] = {
            "customer_id": row["customer_id"], "status": row["status"],
            "ordered_at": ordered_at.removesuffix(".000000"),
            "item_count": count, "units": units, "items_total": money(total),
            "order_total": money(row["total"])}
    return facts


def hot_facts(rows: list[dict]) -> dict:
    return {(r["tenant"], r["order_id"]): {
        "customer_id": r["customer_id"], "status": r["status"],
        "ordered_at": str(r["ordered_at"]).removesuffix(".000000"),
        "item_count": r["item_count"], "units": r["units"],
        "items_total": money(r["items_total"]), "order_total": money(r["order_total"])}
        for r in rows}


def throughput(directory: Path) -> int:
    report = json.loads((directory / "relay.out").read_text())
    table = report["tables"]["order_facts"]
    usage = resources(directory / "relay.time")
    txns = hot_txns(directory)
    checks = label_checks(txns)
    rows = json.loads((directory / "rows.json").read_text())
    expected = expected_order_facts(directory / "expected" / "expected")
    hot = hot_facts(rows)
    wrong = [key for key in expected if hot.get(key) != expected[key]]
    extra = [key for key in hot if key not in expected]
    visible_labels = {t["label"] for t in txns if t["state"] == "VISIBLE"}
    result = {
        "records_consumed": report["records_consumed"],
        "loads": table["loads"],
        "hot_rows_loaded": table["rows"],
        **usage,
        "hot_rows_per_s": round(table["rows"] / usage["wall_s"]),
        "hot_rows_per_cpu_s": round(table["rows"] / usage["cpu_s"]),
        "events_per_cpu_s": round(report["records_consumed"] / usage["cpu_s"]),
        **checks,
        "report_labels_not_visible": sorted(set(table["labels"]) - visible_labels),
        "hot_table_rows": len(rows),
        "expected_live_orders": len(expected),
        "rows_differing_from_expected": len(wrong) + len(extra),
        "example_difference": [str(k) for k in (wrong + extra)[:3]],
    }
    print(json.dumps(result))
    ok = (not checks["labels_visible_twice"] and not result["report_labels_not_visible"]
          and checks["visible_rows"] == table["rows"] and not wrong and not extra)
    return 0 if ok else 1


def histogram(metrics: str) -> dict:
    """Quantiles of firn_relay_event_to_visible_seconds (upper bounds of the buckets)."""
    buckets = []
    for line in metrics.splitlines():
        match = re.match(r'firn_relay_event_to_visible_seconds_bucket\{(.*)\} (\S+)', line)
        if match:
            le = re.search(r'le="([^"]+)"', match.group(1)).group(1)
            buckets.append((float("inf") if le == "+Inf" else float(le), float(match.group(2))))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if not total:
        return {"events": 0}

    def q(p: float) -> float:
        return next(le for le, count in buckets if count >= p * total)

    return {"events": int(total), "p50_le_s": q(0.50), "p90_le_s": q(0.90), "p99_le_s": q(0.99),
            "max_le_s": q(1.0)}


def latency(directory: Path) -> int:
    clock = json.loads((directory / "clock.json").read_text())
    start_unix_ms = clock["unix_ms"] - clock["now_ms"]
    txns = hot_txns(directory)
    visible = {t["label"]: (start_unix_ms + t["visible_at_ms"]) / 1e3
               for t in txns if t["state"] == "VISIBLE"}
    rows = json.loads((directory / "rows.json").read_text())
    # relay_version = newest source time (ms) x 1,000,000 + changes applied to the key.
    lags = [visible[r["relay_label"]] - (r["relay_version"] // 1_000_000) / 1e3 for r in rows]
    producer = json.loads((directory / "producer.json").read_text())
    usage = resources(directory / "relay.time")
    per_label = collections.Counter(t["label"] for t in txns if t["state"] == "VISIBLE")
    times = sorted(visible.values())
    gaps = [b - a for a, b in zip(times, times[1:])]
    result = {
        "produced": producer,
        "relay": usage,
        "loads": len(visible),
        "labels_visible_twice": sorted(label for label, n in per_label.items() if n > 1),
        "mean_s_between_loads": round(sum(gaps) / len(gaps), 3) if gaps else None,
        "per_hot_row": quantiles(lags),
        "per_event_histogram": histogram((directory / "metrics.txt").read_text()),
    }
    print(json.dumps(result))
    return 0 if rows and not result["labels_visible_twice"] else 1


def main() -> int:
    mode, directory = sys.argv[1], Path(sys.argv[2])
    return {"throughput": throughput, "latency": latency}[mode](directory)


if __name__ == "__main__":
    sys.exit(main())

"""Steady-rate Debezium producer for the freshness benchmark (docs/benchmarks.md).

Replays the messages of a `firn gen --out FILE` JSON-lines file to Kafka at a fixed rate,
stamping each event's source time (`source.ts_ms`/`ts_us`/`ts_ns` and the envelope's `ts_ms`)
with the wall clock at the moment it is produced, so that bronze's `_firn_source_ts` is the
produce time. Creates the topics first (`--create-only` stops there). Does I/O (Kafka, files).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--events", required=True, help="firn gen --out file")
    parser.add_argument("--rate", type=float, default=10_000.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--create-only", action="store_true")
    args = parser.parse_args()

    messages = []
    with open(args.events, encoding="utf-8") as lines:
        for line in lines:
            messages.append(json.loads(line))
            if len(messages) >= args.rate * args.seconds:
                break
    topics = sorted({m["topic"] for m in messages})
    admin = AdminClient({"bootstrap.servers": args.brokers})
    existing = admin.list_topics(timeout=10).topics
    new = [NewTopic(t, args.partitions, 1) for t in topics if t not in existing]
    for future in admin.create_topics(new).values() if new else []:
        future.result()
    if args.create_only:
        print(json.dumps({"topics": len(topics)}))
        return 0

    producer = Producer({"bootstrap.servers": args.brokers, "linger.ms": 5})
    start = time.time()
    sent = 0
    for message in messages:
        due = start + sent / args.rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        key = json.dumps(message["key"], separators=(",", ":")).encode() if message.get("key") is not None else None
        value = message.get("value")
        if value is not None:
            now = time.time()
            envelope = value.get("payload", value)
            source = envelope.get("source") or {}
            source["ts_ms"] = int(now * 1e3)
            source["ts_us"] = int(now * 1e6)
            source["ts_ns"] = int(now * 1e9)
            envelope["ts_ms"] = int(now * 1e3)
            value = json.dumps(value, separators=(",", ":")).encode()
        while True:
            try:
                producer.produce(message["topic"], value=value, key=key)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        sent += 1
    producer.flush(30)
    elapsed = time.time() - start
    print(json.dumps({"messages": sent, "seconds": round(elapsed, 2), "rate": round(sent / elapsed)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

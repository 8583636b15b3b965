#!/bin/sh
# One-shot: registers (or updates) one Debezium Postgres connector per tenant with Kafka
# Connect, then waits until each connector and its task run and it has written to all of its
# tables' topics, so firn starts against topics that exist. Idempotent: PUT
# /connectors/<name>/config creates or replaces. Exits non-zero after TIMEOUT seconds.
#
# The connector files hold no password: "${env:DEBEZIUM_PASSWORD}" is resolved inside the
# Connect worker by its EnvVarConfigProvider (CONNECT_CONFIG_PROVIDERS in compose.yaml).
set -eu

CONNECT_URL="${CONNECT_URL:-http://connect:8083}"
DIR="$(dirname "$0")"
TIMEOUT="${TIMEOUT:-600}"
deadline=$(( $(date +%s) + TIMEOUT ))

wait_for() { # description, command...
    what="$1"; shift
    until "$@"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "register: timed out waiting for $what" >&2
            exit 1
        fi
        sleep 3
    done
}

wait_for "Kafka Connect at $CONNECT_URL" curl -fsS -o /dev/null "$CONNECT_URL/connectors"

for file in "$DIR"/shop-*.json; do
    name="$(basename "$file" .json)"
    echo "register: $name"
    curl -fsS -X PUT -H 'Content-Type: application/json' --data @"$file" \
        "$CONNECT_URL/connectors/$name/config" >/dev/null
done

running() { # connector: its state and its task's state are RUNNING
    status="$(curl -fsS "$CONNECT_URL/connectors/$1/status")" || return 1
    [ "$(printf '%s' "$status" | grep -o '"state":"RUNNING"' | wc -l)" -ge 2 ]
}

has_topics() { # connector, tables...: Connect tracks a topic for every table
    connector="$1"; shift
    topics="$(curl -fsS "$CONNECT_URL/connectors/$connector/topics")" || return 1
    for table in "$@"; do
        printf '%s' "$topics" | grep -q "\"[^\"]*\\.$table\"" || return 1
    done
}

for file in "$DIR"/shop-*.json; do
    name="$(basename "$file" .json)"
    wait_for "$name to run" running "$name"
    wait_for "$name's topics" has_topics "$name" customers products orders order_items
    echo "register: $name running, topics: $(curl -fsS "$CONNECT_URL/connectors/$name/topics")"
done

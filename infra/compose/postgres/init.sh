#!/usr/bin/env bash
# First-start initialisation of the compose Postgres (docker-entrypoint-initdb.d; runs once,
# on an empty data volume). Creates:
#   - database `firn` owned by role `firn`: firn's Iceberg SQL catalog and the relay ledger;
#   - role `firn_reader`: read-only on the catalog tables (StarRocks' JDBC catalog uses it);
#   - role `debezium`: LOGIN REPLICATION, SELECT on the shop tables;
#   - one demo OLTP database per tenant, shop_<tenant>, from shop.sql, with publication
#     `firn_shop` that the tenant's Debezium connector streams from.
# Passwords come from the environment (compose passes them from .env), never from a file.
set -euo pipefail

: "${FIRN_CATALOG_PASSWORD:?FIRN_CATALOG_PASSWORD must be set}"
: "${FIRN_READER_PASSWORD:?FIRN_READER_PASSWORD must be set}"
: "${DEBEZIUM_PASSWORD:?DEBEZIUM_PASSWORD must be set}"
TENANTS="${SHOP_TENANTS:-acme globex}"
SHOP_SQL="${SHOP_SQL:-/opt/shop/shop.sql}"

psql=(psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --no-psqlrc)

"${psql[@]}" --dbname postgres \
    -v catalog_pw="$FIRN_CATALOG_PASSWORD" \
    -v reader_pw="$FIRN_READER_PASSWORD" \
    -v debezium_pw="$DEBEZIUM_PASSWORD" <<'SQL'
CREATE ROLE firn LOGIN PASSWORD :'catalog_pw';
CREATE ROLE firn_reader LOGIN PASSWORD :'reader_pw';
CREATE ROLE debezium LOGIN REPLICATION PASSWORD :'debezium_pw';
CREATE DATABASE firn OWNER firn;
GRANT CONNECT ON DATABASE firn TO firn_reader;
SQL

# firn creates the catalog tables itself (`firn init`); whatever it creates is readable by
# firn_reader.
"${psql[@]}" --dbname firn <<'SQL'
GRANT USAGE ON SCHEMA public TO firn_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE firn IN SCHEMA public GRANT SELECT ON TABLES TO firn_reader;
SQL

for tenant in $TENANTS; do
    "${psql[@]}" --dbname postgres -v db="shop_${tenant}" <<'SQL'
CREATE DATABASE :"db";
SQL
    "${psql[@]}" --dbname "shop_${tenant}" -v tenant="$tenant" -f "$SHOP_SQL"
done

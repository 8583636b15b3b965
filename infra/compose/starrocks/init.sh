#!/usr/bin/env bash
# Applies sql/starrocks/*.sql to the compose StarRocks, filled in for this deployment.
#
#   init.sh apply        01_hot_tables.sql, the relay's user, 02_iceberg_catalog_jdbc.sql
#   init.sh mv           waits until firn.gold.order_facts exists (the first `firn transform
#                        all`), then 05_mv_daily_revenue.sql
#   init.sh render [mv]  prints what `apply` (or `mv`) would send, with secrets as given;
#                        the infra tests use it to check the rendering offline
#
# Not applied: 03_iceberg_catalog_rest.sql (compose runs no REST catalog) and
# 04_dashboard_queries.sql (example queries, with a <snapshot_id> placeholder).
#
# The files are written for a production cluster; for the one-BE compose cluster this
# script sets replication_num to $REPLICATION_NUM (1), fills the <...> placeholders of the
# JDBC catalog and switches its S3 settings from an instance profile to the compose S3
# store with static keys. Passwords come from the environment only.
set -euo pipefail

SQL_DIR="${SQL_DIR:-/sql}"
FE_HOST="${FE_HOST:-starrocks-fe}"
FE_QUERY_PORT="${FE_QUERY_PORT:-9030}"
REPLICATION_NUM="${REPLICATION_NUM:-1}"
HOT_DATABASE="${HOT_DATABASE:-firn_hot}"
LOADER_USER="${LOADER_USER:-firn_loader}"
CATALOG_PG_HOST="${CATALOG_PG_HOST:-postgres}"
CATALOG_PG_DB="${CATALOG_PG_DB:-firn}"
CATALOG_READER="${CATALOG_READER:-firn_reader}"
WAREHOUSE="${WAREHOUSE:-s3://lake/firn}"
S3_ENDPOINT="${S3_ENDPOINT:-http://s3:9000}"
S3_REGION="${S3_REGION:-us-east-1}"
MV_TIMEOUT="${MV_TIMEOUT:-3600}"

die() { echo "starrocks-init: $*" >&2; exit 1; }

# A value that goes inside a quoted SQL literal: required, no quotes or backslashes.
literal() { # name
    local value="${!1:-}"
    [ -n "$value" ] || die "$1 must be set"
    case "$value" in
        *[\"\'\\]* | *$'\n'*) die "$1 must not contain quotes, backslashes or newlines" ;;
    esac
    printf '%s' "$value"
}

# The same, escaped for the replacement side of a sed `s|...|...|`.
sed_literal() { literal "$1" | sed -e 's/[&|]/\\&/g'; }

replicas() { sed -E "s/(\"replication_num\"[[:space:]]*=[[:space:]]*)\"[0-9]+\"/\1\"$REPLICATION_NUM\"/" "$1"; }

render_apply() {
    local loader_pw reader_pw access_key secret_key
    loader_pw="$(literal STARROCKS_LOADER_PASSWORD)"
    reader_pw="$(sed_literal FIRN_READER_PASSWORD)"
    access_key="$(sed_literal S3_ACCESS_KEY)"
    secret_key="$(sed_literal S3_SECRET_KEY)"

    echo "-- ${SQL_DIR}/01_hot_tables.sql (replication_num = ${REPLICATION_NUM})"
    replicas "$SQL_DIR/01_hot_tables.sql"

    echo "-- the relay's Stream Load user"
    echo "CREATE USER IF NOT EXISTS '${LOADER_USER}'@'%' IDENTIFIED BY '${loader_pw}';"
    echo "ALTER USER '${LOADER_USER}'@'%' IDENTIFIED BY '${loader_pw}';"
    echo "GRANT INSERT, SELECT ON ALL TABLES IN DATABASE ${HOT_DATABASE} TO USER '${LOADER_USER}'@'%';"

    # The file's trailing example queries (SHOW/SELECT) are dropped: gold tables exist only
    # after the first transform run.
    echo "-- ${SQL_DIR}/02_iceberg_catalog_jdbc.sql (compose values)"
    sed -E \
        -e '/^(SHOW|SELECT) /d' \
        -e "s|<postgres-host>|${CATALOG_PG_HOST}|" \
        -e "s|<firn-catalog-db>|${CATALOG_PG_DB}|" \
        -e "s|s3://<bucket>/<prefix>|${WAREHOUSE}|" \
        -e "s|<read-only-user>|${CATALOG_READER}|" \
        -e "s|<password>|${reader_pw}|" \
        -e "s|<region>|${S3_REGION}|" \
        -e 's|"aws.s3.use_instance_profile" = "true"$|"aws.s3.use_instance_profile" = "false",|' \
        -e 's|^([[:space:]]*)-- ("aws.s3.endpoint" = )"[^"]*"|\1\2"'"${S3_ENDPOINT}"'"|' \
        -e 's|^([[:space:]]*)-- ("aws.s3.enable_path_style_access")|\1\2|' \
        -e 's|^([[:space:]]*)-- ("aws.s3.enable_ssl")|\1\2|' \
        -e 's|^([[:space:]]*)-- ("aws.s3.access_key" = )"<ak>"|\1\2"'"${access_key}"'"|' \
        -e 's|^([[:space:]]*)-- ("aws.s3.secret_key" = )"<sk>"|\1\2"'"${secret_key}"'"|' \
        "$SQL_DIR/02_iceberg_catalog_jdbc.sql"
}

render_mv() {
    echo "-- ${SQL_DIR}/05_mv_daily_revenue.sql (replication_num = ${REPLICATION_NUM})"
    replicas "$SQL_DIR/05_mv_daily_revenue.sql"
}

mysql_fe() { mysql --batch --connect-timeout 5 -h "$FE_HOST" -P "$FE_QUERY_PORT" -u root "$@"; }

case "${1:-}" in
    render)
        if [ "${2:-}" = mv ]; then render_mv; else render_apply; fi
        ;;
    apply)
        render_apply | mysql_fe
        echo "starrocks-init: applied 01_hot_tables.sql, the ${LOADER_USER} user and 02_iceberg_catalog_jdbc.sql"
        ;;
    mv)
        deadline=$(( $(date +%s) + MV_TIMEOUT ))
        until mysql_fe -e 'SELECT count(*) FROM firn.gold.order_facts' >/dev/null 2>&1; do
            [ "$(date +%s)" -lt "$deadline" ] || die "firn.gold.order_facts did not appear within ${MV_TIMEOUT}s"
            sleep 15
        done
        render_mv | mysql_fe
        echo "starrocks-init: applied 05_mv_daily_revenue.sql"
        ;;
    *)
        die "usage: init.sh apply | mv | render [mv]"
        ;;
esac

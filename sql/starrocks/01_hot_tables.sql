-- Hot-path tables in StarRocks, loaded by `firn relay` with Stream Load.
-- Apply with: mysql -h <fe-host> -P 9030 -u root < sql/starrocks/01_hot_tables.sql
--
-- One Primary Key table per relayed gold model, with the same columns as the Iceberg
-- table gold.<model> so the hot and the cold path agree row for row. Rules that matter:
-- * the tenant leads the key, so tenants never share a row;
-- * relay_version is the merge_condition column (`merge_condition: relay_version`):
--   newest source commit time (epoch ms) of any change applied to the key's source rows
--   x 1,000,000 + the number of those changes, deletes included, so it grows with every
--   change while the key lives and a replayed older batch never overwrites a newer row,
--   even one from the same source transaction. (The model's own source_version is the newest
--   time among the *current* rows: deleting the newest order item lowers it, so it cannot
--   be the merge condition.) Deletes are not conditional in StarRocks, see the README;
-- * relay_label records the Stream Load label that wrote the row, for audits.
-- The columns before relay_version are exactly gold.order_facts's (sql/gold/order_facts.sql).

CREATE DATABASE IF NOT EXISTS firn_hot;

CREATE TABLE IF NOT EXISTS firn_hot.order_facts (
    tenant          VARCHAR(63)     NOT NULL COMMENT 'tenant; leading key column',
    order_id        BIGINT          NOT NULL,
    customer_id     BIGINT          NULL,
    status          VARCHAR(32)     NULL,
    ordered_at      DATETIME        NULL,
    order_date      DATE            NULL,
    item_count      BIGINT          NULL,
    units           BIGINT          NULL,
    items_total     DECIMAL(18, 2)  NULL,
    order_total     DECIMAL(12, 2)  NULL,
    source_version  BIGINT          NULL     COMMENT 'gold.order_facts.source_version: newest source commit time (epoch us) of the current rows',
    relay_version   BIGINT          NOT NULL COMMENT 'newest source commit time (epoch ms) x 1000000 + changes to the key; merge_condition',
    relay_label     VARCHAR(128)    NULL     COMMENT 'Stream Load label of the batch that wrote the row'
)
PRIMARY KEY (tenant, order_id)
COMMENT 'gold.order_facts, hot path; written only by firn relay'
DISTRIBUTED BY HASH(tenant, order_id) BUCKETS 8
ORDER BY (tenant, order_date)
PROPERTIES (
    "replication_num"         = "3",
    "enable_persistent_index" = "true",
    "compression"             = "LZ4"
);

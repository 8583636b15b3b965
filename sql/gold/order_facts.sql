-- gold.order_facts: one row per live order, with its items' totals.
-- Key (tenant, order_id); partitioned by tenant; pushed to StarRocks by the relay.
--
-- source_version: the StarRocks relay's merge_condition column. It is the newest source
-- commit time (Debezium source.ts, `_firn_source_ts`) among the order row and its item
-- rows, as epoch microseconds (BIGINT). A BIGINT compares correctly in StarRocks, whereas
-- `_firn_source_pos` is a connector-specific string (binlog file/pos or LSN) that does not
-- order across connectors. The relay computes the same value from the change events it
-- applies, so a replayed older event never regresses a row.
WITH items AS (
    SELECT
        tenant,
        order_id,
        COUNT(*) AS item_count,
        SUM(CAST(quantity AS BIGINT)) AS units,
        SUM(CAST(quantity AS DECIMAL(10, 0)) * unit_price) AS items_total,
        MAX(CAST(_firn_source_ts AS BIGINT)) AS source_version
    FROM silver.order_items
    GROUP BY tenant, order_id
)
SELECT
    o.tenant,
    o.id AS order_id,
    o.customer_id,
    o.status,
    o.ordered_at,
    CAST(o.ordered_at AS DATE) AS order_date,
    COALESCE(i.item_count, 0) AS item_count,
    COALESCE(i.units, 0) AS units,
    CAST(COALESCE(i.items_total, 0) AS DECIMAL(18, 2)) AS items_total,
    o.total AS order_total,
    GREATEST(CAST(o._firn_source_ts AS BIGINT), COALESCE(i.source_version, 0)) AS source_version
FROM silver.orders AS o
LEFT JOIN items AS i
    ON i.tenant = o.tenant AND i.order_id = o.id

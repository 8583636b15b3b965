-- An async materialized view over the Iceberg gold fact table: StarRocks refreshes it
-- every 5 minutes and may rewrite queries on firn.gold.order_facts to use it.

CREATE MATERIALIZED VIEW IF NOT EXISTS firn_hot.mv_daily_revenue
COMMENT 'daily revenue per tenant from firn.gold.order_facts'
DISTRIBUTED BY HASH(tenant) BUCKETS 8
REFRESH ASYNC EVERY (INTERVAL 5 MINUTE)
PROPERTIES (
    "mv_rewrite_staleness_second" = "300",
    "force_external_table_query_rewrite" = "true",
    "replication_num" = "3"
)
AS
SELECT tenant, order_date,
       count(*) AS orders,
       sum(CASE WHEN status <> 'cancelled' THEN order_total ELSE 0 END) AS revenue,
       max(ordered_at) AS last_order_at
FROM firn.gold.order_facts
GROUP BY tenant, order_date;

-- REFRESH MATERIALIZED VIEW firn_hot.mv_daily_revenue;
-- SELECT * FROM information_schema.task_runs ORDER BY create_time DESC LIMIT 5;

-- Example dashboard queries: hot rows from the relay next to the lakehouse tables.

-- Revenue today per tenant, from the hot table (seconds behind the source).
SELECT tenant, count(*) AS orders, sum(order_total) AS revenue
FROM firn_hot.order_facts
WHERE order_date = CURRENT_DATE() AND status <> 'cancelled'
GROUP BY tenant
ORDER BY revenue DESC;

-- Daily revenue history from the batch gold model in Iceberg.
SELECT tenant, order_date, orders, revenue
FROM firn.gold.daily_revenue
WHERE order_date >= date_sub(CURRENT_DATE(), INTERVAL 30 DAY)
ORDER BY tenant, order_date;

-- Hot and cold agree: orders whose hot row differs from the batch gold row.
SELECT h.tenant, h.order_id, h.order_total AS hot_total, c.order_total AS lake_total
FROM firn_hot.order_facts h
JOIN firn.gold.order_facts c ON h.tenant = c.tenant AND h.order_id = c.order_id
WHERE h.order_total <> c.order_total OR h.status <> c.status;

-- Top customers by lifetime value.
SELECT tenant, customer_id, lifetime_value, orders
FROM firn.gold.customer_ltv
ORDER BY lifetime_value DESC
LIMIT 20;

-- Time travel to a bronze snapshot (ids from `firn snapshots bronze.orders`).
SELECT count(*) FROM firn.bronze.orders FOR VERSION AS OF <snapshot_id>;
SELECT snapshot_id, committed_at, operation FROM firn.bronze.orders$snapshots;

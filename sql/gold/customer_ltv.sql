-- gold.customer_ltv: per tenant and customer with at least one live order, the number of
-- orders, the lifetime value (sum of order totals of orders that are not cancelled), and
-- the first and last order times.
-- Key (tenant, customer_id); partitioned by tenant.
SELECT
    tenant,
    customer_id,
    COUNT(*) AS orders,
    CAST(
        COALESCE(SUM(CASE WHEN status <> 'cancelled' THEN order_total END), 0)
        AS DECIMAL(18, 2)
    ) AS lifetime_value,
    MIN(ordered_at) AS first_order_at,
    MAX(ordered_at) AS last_order_at
FROM gold.order_facts
GROUP BY tenant, customer_id

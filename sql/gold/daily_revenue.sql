-- gold.daily_revenue: per tenant and calendar day (UTC date of ordered_at), the number of
-- orders, how many of them are cancelled, and the revenue (sum of order totals of the
-- orders that are not cancelled). Built on gold.order_facts so both agree by construction.
-- Key (tenant, order_date); partitioned by tenant.
SELECT
    tenant,
    order_date,
    COUNT(*) AS orders,
    SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) AS cancelled_orders,
    CAST(
        COALESCE(SUM(CASE WHEN status <> 'cancelled' THEN order_total END), 0)
        AS DECIMAL(18, 2)
    ) AS revenue
FROM gold.order_facts
GROUP BY tenant, order_date

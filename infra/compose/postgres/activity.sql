-- One round of shop activity for one tenant database, run in a loop by the compose service
-- `shop-activity` so there is a live change stream: a new order with two items, a status
-- change, now and then a cancelled order's deletion (a Debezium delete and tombstone).
WITH customer AS (
    SELECT id FROM customers ORDER BY random() LIMIT 1
), new_order AS (
    INSERT INTO orders (customer_id, status, total, ordered_at)
    SELECT id, 'pending', 0, localtimestamp FROM customer
    RETURNING id
)
INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price)
SELECT new_order.id, line.no, product.id, 1 + line.no % 3, product.price
FROM new_order
CROSS JOIN generate_series(1, 2) AS line (no)
JOIN LATERAL (
    SELECT id, price FROM products WHERE active AND id % 2 = line.no % 2 ORDER BY random() LIMIT 1
) AS product ON true;

UPDATE orders
SET total = (SELECT coalesce(sum(quantity * unit_price), 0) FROM order_items WHERE order_id = orders.id)
WHERE id = (SELECT max(id) FROM orders);

UPDATE orders
SET status = CASE status WHEN 'pending' THEN 'paid' ELSE 'shipped' END
WHERE id = (SELECT id FROM orders WHERE status IN ('pending', 'paid') ORDER BY random() LIMIT 1);

DELETE FROM orders
WHERE id = (SELECT id FROM orders WHERE status = 'cancelled' ORDER BY random() LIMIT 1)
  AND random() < 0.1;

-- One row per product: its latest brand, price and category (as of its
-- newest event; the newest non-empty brand and code), and its activity.
SELECT
    product_id,
    last_value(brand ORDER BY event_time) FILTER (WHERE brand IS NOT NULL) AS brand,
    last_value(price ORDER BY event_time) AS price,
    last_value(price_tier ORDER BY event_time) AS price_tier,
    last_value(category_id ORDER BY event_time) AS category_id,
    last_value(category_code ORDER BY event_time) FILTER (WHERE category_code IS NOT NULL) AS category_code,
    MIN(event_time) AS first_seen,
    MAX(event_time) AS last_seen,
    SUM(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS views,
    SUM(CASE WHEN event_type = 'cart' THEN 1 ELSE 0 END) AS carts,
    SUM(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
    SUM(CASE WHEN event_type = 'purchase' THEN price ELSE 0 END) AS revenue
FROM silver.events
GROUP BY product_id
ORDER BY product_id

-- One row per category id: its latest code and levels, how many products.
WITH latest AS (
    SELECT
        category_id,
        last_value(category_code ORDER BY event_time) FILTER (WHERE category_code IS NOT NULL) AS category_code,
        COUNT(DISTINCT product_id) AS products,
        COUNT(*) AS events
    FROM silver.events
    GROUP BY category_id
)
SELECT
    category_id,
    category_code,
    NULLIF(split_part(category_code, '.', 1), '') AS category_l1,
    NULLIF(split_part(category_code, '.', 2), '') AS category_l2,
    NULLIF(split_part(category_code, '.', 3), '') AS category_l3,
    products,
    events
FROM latest
ORDER BY category_id

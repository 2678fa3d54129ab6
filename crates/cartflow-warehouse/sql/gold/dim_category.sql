-- One row per category id: its latest code and levels, how many products.
WITH codes AS (
    SELECT
        category_id,
        last_value(category_code ORDER BY event_time) FILTER (WHERE category_code IS NOT NULL) AS category_code,
        COUNT(*) AS events
    FROM silver.events
    GROUP BY category_id
),
products AS (
    SELECT category_id, COUNT(*) AS products
    FROM (SELECT category_id, product_id FROM silver.events GROUP BY category_id, product_id) p
    GROUP BY category_id
)
SELECT
    c.category_id,
    c.category_code,
    NULLIF(split_part(c.category_code, '.', 1), '') AS category_l1,
    NULLIF(split_part(c.category_code, '.', 2), '') AS category_l2,
    NULLIF(split_part(c.category_code, '.', 3), '') AS category_l3,
    p.products,
    c.events
FROM codes c
JOIN products p ON p.category_id = c.category_id
ORDER BY c.category_id

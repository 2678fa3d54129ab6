-- Views, carts, purchases and conversion by category, with the share of
-- first carts that were bought.
WITH events AS (
    SELECT
        c.category_l1,
        c.category_l2,
        SUM(CASE WHEN f.event_type = 'view' THEN 1 ELSE 0 END) AS views,
        SUM(CASE WHEN f.event_type = 'cart' THEN 1 ELSE 0 END) AS carts,
        SUM(CASE WHEN f.event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
        SUM(CASE WHEN f.event_type = 'purchase' THEN f.price ELSE 0 END) AS revenue
    FROM gold.fact_events f
    JOIN gold.dim_category c ON c.category_id = f.category_id
    GROUP BY c.category_l1, c.category_l2
),
outcomes AS (
    SELECT
        c.category_l1,
        c.category_l2,
        COUNT(*) AS first_carts,
        SUM(CASE WHEN o.is_purchased THEN 1 ELSE 0 END) AS bought
    FROM gold.fact_cart_outcomes o
    JOIN gold.dim_category c ON c.category_id = o.category_id
    GROUP BY c.category_l1, c.category_l2
)
SELECT
    e.category_l1,
    e.category_l2,
    e.views,
    e.carts,
    e.purchases,
    e.revenue,
    CASE WHEN e.views > 0 THEN 1.0 * e.purchases / e.views END AS view_to_purchase,
    CASE WHEN o.first_carts > 0 THEN 1.0 * o.bought / o.first_carts END AS cart_to_purchase
FROM events e
LEFT JOIN outcomes o
    -- Parenthesized: some parsers bind IS NOT DISTINCT FROM looser than AND.
    ON (o.category_l1 IS NOT DISTINCT FROM e.category_l1) AND (o.category_l2 IS NOT DISTINCT FROM e.category_l2)

-- One row per session: who, when, how long, what happened.
WITH products AS (
    SELECT
        user_session,
        product_id,
        MIN(user_id) AS user_id,
        MIN(event_time) AS first_time,
        MAX(event_time) AS last_time,
        COUNT(*) AS events,
        SUM(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS views,
        SUM(CASE WHEN event_type = 'cart' THEN 1 ELSE 0 END) AS carts,
        SUM(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
        SUM(CASE WHEN event_type = 'purchase' THEN price ELSE 0 END) AS revenue
    FROM gold.fact_events
    WHERE user_session IS NOT NULL
    GROUP BY user_session, product_id
)
SELECT
    user_session,
    MIN(user_id) AS user_id,
    MIN(first_time) AS session_start,
    MAX(last_time) AS session_end,
    EXTRACT(EPOCH FROM MAX(last_time)) - EXTRACT(EPOCH FROM MIN(first_time)) AS duration_seconds,
    -- Sums of counts are BIGINT like the counts (PostgreSQL would make them NUMERIC).
    CAST(SUM(events) AS BIGINT) AS events,
    CAST(SUM(views) AS BIGINT) AS views,
    CAST(SUM(carts) AS BIGINT) AS carts,
    CAST(SUM(purchases) AS BIGINT) AS purchases,
    COUNT(*) AS products,
    SUM(revenue) AS revenue,
    SUM(purchases) > 0 AS converted
FROM products
GROUP BY user_session

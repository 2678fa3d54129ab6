-- One row per session: who, when, how long, what happened.
SELECT
    user_session,
    MIN(user_id) AS user_id,
    MIN(event_time) AS session_start,
    MAX(event_time) AS session_end,
    EXTRACT(EPOCH FROM MAX(event_time)) - EXTRACT(EPOCH FROM MIN(event_time)) AS duration_seconds,
    COUNT(*) AS events,
    SUM(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS views,
    SUM(CASE WHEN event_type = 'cart' THEN 1 ELSE 0 END) AS carts,
    SUM(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
    COUNT(DISTINCT product_id) AS products,
    SUM(CASE WHEN event_type = 'purchase' THEN price ELSE 0 END) AS revenue,
    SUM(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) > 0 AS converted
FROM gold.fact_events
WHERE user_session IS NOT NULL
GROUP BY user_session

-- One row per user: when they were seen, how often, what they did.
-- Sessions are counted by their first events (session_seq = 1), so one
-- aggregation by user does it: COUNT(DISTINCT user_session) would keep a set
-- per user, and grouping by session first holds every session at once.
SELECT
    user_id,
    MIN(event_time) AS first_seen,
    MAX(event_time) AS last_seen,
    SUM(CASE WHEN session_seq = 1 THEN 1 ELSE 0 END) AS sessions,
    COUNT(*) AS events,
    SUM(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS views,
    SUM(CASE WHEN event_type = 'cart' THEN 1 ELSE 0 END) AS carts,
    SUM(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
    SUM(CASE WHEN event_type = 'purchase' THEN price ELSE 0 END) AS revenue
FROM silver.events
GROUP BY user_id
ORDER BY user_id

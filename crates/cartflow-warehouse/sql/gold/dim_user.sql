-- One row per user: when they were seen, how often, what they did.
-- Sessions first, then users: two plain aggregations, where COUNT(DISTINCT)
-- per user would keep a set of sessions for every user at once.
WITH sessions AS (
    SELECT
        user_id,
        user_session,
        MIN(event_time) AS first_seen,
        MAX(event_time) AS last_seen,
        COUNT(*) AS events,
        SUM(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS views,
        SUM(CASE WHEN event_type = 'cart' THEN 1 ELSE 0 END) AS carts,
        SUM(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
        SUM(CASE WHEN event_type = 'purchase' THEN price ELSE 0 END) AS revenue
    FROM silver.events
    GROUP BY user_id, user_session
)
SELECT
    user_id,
    MIN(first_seen) AS first_seen,
    MAX(last_seen) AS last_seen,
    COUNT(user_session) AS sessions,
    SUM(events) AS events,
    SUM(views) AS views,
    SUM(carts) AS carts,
    SUM(purchases) AS purchases,
    SUM(revenue) AS revenue
FROM sessions
GROUP BY user_id
ORDER BY user_id

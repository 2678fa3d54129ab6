-- silver.events for some hours of one day. {bronze} holds the bronze rows
-- of those hours; {earlier} the silver rows from 00:00 UTC of the day before
-- up to the first of them, for session order. Exact duplicates (all nine
-- fields equal, so in the same hour) count once; a row that CDC deleted is
-- dropped; `session_seq` numbers a session's events in time order, counting
-- from 00:00 UTC of the day before the event's day.
WITH distinct_events AS (
    SELECT event_time, event_type, product_id, category_id, category_code, brand, price, user_id, user_session
    FROM {bronze}
    GROUP BY event_time, event_type, product_id, category_id, category_code, brand, price, user_id, user_session
    HAVING COUNT(CASE WHEN _op = 'd' THEN 1 END) = 0
),
earlier AS (
    SELECT user_session, COUNT(*) AS events
    FROM {earlier}
    WHERE user_session IS NOT NULL
    GROUP BY user_session
)
SELECT
    d.event_time,
    d.event_type,
    d.product_id,
    d.category_id,
    d.category_code,
    NULLIF(split_part(d.category_code, '.', 1), '') AS category_l1,
    NULLIF(split_part(d.category_code, '.', 2), '') AS category_l2,
    NULLIF(split_part(d.category_code, '.', 3), '') AS category_l3,
    d.brand,
    d.price,
    CASE WHEN d.price < 50 THEN 'low' WHEN d.price < 250 THEN 'medium' WHEN d.price < 1000 THEN 'high' ELSE 'luxury' END
        AS price_tier,
    d.user_id,
    d.user_session,
    CASE WHEN d.user_session IS NOT NULL THEN COALESCE(e.events, 0) + CAST(ROW_NUMBER() OVER (
        PARTITION BY d.user_session
        ORDER BY d.event_time, d.event_type, d.product_id, d.category_id, d.price, d.brand, d.category_code, d.user_id
    ) AS BIGINT) END AS session_seq,
    CAST(date_part('year', d.event_time) * 1000000 + date_part('month', d.event_time) * 10000
        + date_part('day', d.event_time) * 100 + date_part('hour', d.event_time) AS INT) AS date_key
FROM distinct_events d
LEFT JOIN earlier e ON e.user_session = d.user_session
ORDER BY d.event_time, d.user_id, d.user_session, d.product_id, d.event_type

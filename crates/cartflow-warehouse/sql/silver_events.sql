-- silver.events for the hours of one day, from the bronze rows of that day
-- and the day before ({bronze}); the build keeps the rows of the hours it
-- rebuilds. Exact duplicates (all nine fields equal) count once; a row that
-- CDC deleted is dropped; `session_seq` numbers a session's events in time
-- order, counting from 00:00 UTC of the day before the event's day.
WITH distinct_events AS (
    SELECT event_time, event_type, product_id, category_id, category_code, brand, price, user_id, user_session
    FROM {bronze}
    GROUP BY event_time, event_type, product_id, category_id, category_code, brand, price, user_id, user_session
    HAVING COUNT(CASE WHEN _op = 'd' THEN 1 END) = 0
)
SELECT
    event_time,
    event_type,
    product_id,
    category_id,
    category_code,
    NULLIF(split_part(category_code, '.', 1), '') AS category_l1,
    NULLIF(split_part(category_code, '.', 2), '') AS category_l2,
    NULLIF(split_part(category_code, '.', 3), '') AS category_l3,
    brand,
    price,
    CASE WHEN price < 50 THEN 'low' WHEN price < 250 THEN 'medium' WHEN price < 1000 THEN 'high' ELSE 'luxury' END
        AS price_tier,
    user_id,
    user_session,
    CASE WHEN user_session IS NOT NULL THEN CAST(ROW_NUMBER() OVER (
        PARTITION BY user_session
        ORDER BY event_time, event_type, product_id, category_id, price, brand, category_code, user_id
    ) AS BIGINT) END AS session_seq,
    CAST(date_part('year', event_time) * 1000000 + date_part('month', event_time) * 10000
        + date_part('day', event_time) * 100 + date_part('hour', event_time) AS INT) AS date_key
FROM distinct_events
ORDER BY event_time, user_id, user_session, product_id, event_type

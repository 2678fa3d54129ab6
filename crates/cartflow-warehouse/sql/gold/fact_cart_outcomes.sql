-- One row per (session, product): its first cart, and whether the session
-- bought the product at or after that moment (DESIGN.md's label). Carts with
-- no session get no row.
WITH first_carts AS (
    SELECT
        user_session,
        product_id,
        MIN(event_time) AS cart_time,
        first_value(user_id ORDER BY event_time, session_seq) AS user_id,
        first_value(category_id ORDER BY event_time, session_seq) AS category_id,
        first_value(price ORDER BY event_time, session_seq) AS price,
        first_value(session_seq ORDER BY event_time, session_seq) AS session_seq,
        first_value(date_key ORDER BY event_time, session_seq) AS date_key,
        COUNT(*) AS carts
    FROM silver.events
    WHERE event_type = 'cart' AND user_session IS NOT NULL
    GROUP BY user_session, product_id
),
purchases AS (
    SELECT user_session, product_id, event_time
    FROM silver.events
    WHERE event_type = 'purchase' AND user_session IS NOT NULL
)
SELECT
    c.user_session,
    c.product_id,
    c.user_id,
    c.category_id,
    c.date_key,
    c.cart_time,
    c.price,
    c.session_seq,
    c.carts,
    MIN(p.event_time) IS NOT NULL AS is_purchased,
    MIN(p.event_time) AS purchase_time
FROM first_carts c
LEFT JOIN purchases p
    ON p.user_session = c.user_session AND p.product_id = c.product_id AND p.event_time >= c.cart_time
GROUP BY c.user_session, c.product_id, c.user_id, c.category_id, c.date_key, c.cart_time, c.price, c.session_seq, c.carts
ORDER BY c.cart_time, c.user_session, c.product_id

//! The SQL of silver and gold. The files under `sql/` are plain SQL that
//! DuckDB runs too (see benches/warehouse_duckdb.py).

/// silver.events for one day's chunk; `{bronze}` names the chunk's rows.
pub const SILVER_EVENTS: &str = include_str!("../sql/silver_events.sql");

/// Columns of silver.events: all the query's.
pub const SILVER_COLUMNS: &[&str] = &[
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "category_l1",
    "category_l2",
    "category_l3",
    "brand",
    "price",
    "price_tier",
    "user_id",
    "user_session",
    "session_seq",
    "date_key",
];

/// Columns of gold.fact_events, from the same query.
pub const FACT_EVENT_COLUMNS: &[&str] = &[
    "event_time",
    "date_key",
    "event_type",
    "user_id",
    "user_session",
    "product_id",
    "category_id",
    "price",
    "session_seq",
];

/// Gold tables rebuilt whole from silver, in build order.
pub const GOLD_TABLES: &[(&str, &str)] = &[
    ("dim_user", include_str!("../sql/gold/dim_user.sql")),
    ("dim_product", include_str!("../sql/gold/dim_product.sql")),
    ("dim_category", include_str!("../sql/gold/dim_category.sql")),
    ("dim_date", include_str!("../sql/gold/dim_date.sql")),
    ("fact_cart_outcomes", include_str!("../sql/gold/fact_cart_outcomes.sql")),
];

/// Views over gold (in the `gold` schema, and in PostgreSQL's `dwh` on export).
pub const GOLD_VIEWS: &[(&str, &str)] = &[
    ("vw_category_performance", include_str!("../sql/gold/vw_category_performance.sql")),
    ("vw_user_session_summary", include_str!("../sql/gold/vw_user_session_summary.sql")),
];

/// Keys and indexes of each gold table in PostgreSQL: (table, primary key, indexed columns).
pub const GOLD_KEYS: &[(&str, &[&str], &[&str])] = &[
    ("dim_user", &["user_id"], &[]),
    ("dim_product", &["product_id"], &["category_id"]),
    ("dim_category", &["category_id"], &["category_l1"]),
    ("dim_date", &["date_key"], &["date"]),
    ("fact_events", &[], &["event_time", "date_key", "user_id", "product_id", "user_session"]),
    ("fact_cart_outcomes", &["user_session", "product_id"], &["cart_time", "date_key", "user_id", "product_id"]),
];

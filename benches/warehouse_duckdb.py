#!/usr/bin/env python3
"""The warehouse's SQL run by DuckDB on the same lake, for comparison.

    python3 benches/warehouse_duckdb.py LAKE_DIR [--check] [--json] [--threads N]

Runs crates/cartflow-warehouse/sql/ (silver over all of bronze, then every
gold table and view) in DuckDB on the lake's bronze Parquet, writing zstd
Parquet as cartflow does, and prints the time. With --check it compares what
DuckDB computed with the gold cartflow built (`cartflow warehouse build`),
table by table, and fails on any difference.

DuckDB spells two aggregates differently: last_value/first_value with ORDER BY
are last/first. Silver's session order is counted over all of bronze here,
where cartflow counts from 00:00 of the day before each event; the two agree
for sessions shorter than a day, as every generated one is.
"""
import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import duckdb

SQL = pathlib.Path(__file__).resolve().parent.parent / "crates/cartflow-warehouse/sql"
GOLD_TABLES = ["dim_user", "dim_product", "dim_category", "dim_date", "fact_cart_outcomes"]
VIEWS = ["vw_category_performance", "vw_user_session_summary"]
FACT_EVENTS = "SELECT event_time, date_key, event_type, user_id, user_session, product_id, category_id, price, session_seq FROM silver.events"


def duckdb_sql(text):
    return text.replace("last_value(", "last(").replace("first_value(", "first(")


def build(con, lake, out):
    con.execute("CREATE SCHEMA bronze; CREATE SCHEMA silver; CREATE SCHEMA gold")
    con.execute(f"CREATE VIEW bronze.events AS SELECT * FROM read_parquet('{lake}/events/**/*.parquet')")
    silver = (SQL / "silver_events.sql").read_text().replace("{bronze}", "bronze.events")
    silver = silver.replace("{earlier}", "(SELECT CAST(NULL AS VARCHAR) AS user_session WHERE FALSE)")
    con.execute(f"CREATE TABLE silver.events AS {silver}")
    con.execute(f"COPY silver.events TO '{out}/silver.parquet' (FORMAT parquet, COMPRESSION zstd)")
    con.execute(f"CREATE TABLE gold.fact_events AS {FACT_EVENTS}")
    con.execute(f"COPY gold.fact_events TO '{out}/fact_events.parquet' (FORMAT parquet, COMPRESSION zstd)")
    for name in GOLD_TABLES:
        con.execute(f"CREATE TABLE gold.{name} AS {duckdb_sql((SQL / 'gold' / f'{name}.sql').read_text())}")
        con.execute(f"COPY gold.{name} TO '{out}/{name}.parquet' (FORMAT parquet, COMPRESSION zstd)")
    for name in VIEWS:
        con.execute(f"CREATE VIEW gold.{name} AS {duckdb_sql((SQL / 'gold' / f'{name}.sql').read_text())}")


# What --check compares, per table: aggregates that any wrong row would move.
CHECKS = {
    "fact_events": "count(*), sum(product_id), count(user_session), sum(session_seq), sum(date_key)",
    "dim_user": "count(*), sum(sessions), sum(events), sum(purchases), round(sum(revenue), 2), sum(epoch_us(first_seen))",
    "dim_product": "count(*), count(brand), count(category_code), round(sum(price), 2), sum(views), sum(carts)",
    "dim_category": "count(*), count(category_code), count(category_l3), sum(products), sum(events)",
    "dim_date": "count(*), sum(weekday), sum(hour), sum(events), count(*) filter (where is_weekend)",
    "fact_cart_outcomes": "count(*), sum(is_purchased::int), sum(carts), sum(session_seq), round(sum(price), 2), sum(epoch_us(purchase_time))",
}


def check(con, lake):
    state = json.loads((pathlib.Path(lake) / "_warehouse/state.json").read_text())
    files = {name: [f"{lake}/{t['path']}"] for name, t in state["tables"].items()}
    files["fact_events"] = [f"{lake}/{h['fact_events']['path']}" for h in state["hours"].values()]
    differences = []
    for table, aggregates in CHECKS.items():
        ours = con.execute(f"SELECT {aggregates} FROM read_parquet({files[table]!r})").fetchall()[0]
        theirs = con.execute(f"SELECT {aggregates} FROM gold.{table}").fetchall()[0]
        if ours != theirs:
            differences.append(f"{table}: cartflow {ours} != duckdb {theirs}")
    for view in VIEWS:
        n = con.execute(f"SELECT count(*) FROM gold.{view}").fetchall()[0][0]
        if n == 0:
            differences.append(f"{view}: empty")
    return differences


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("lake")
    p.add_argument("--check", action="store_true", help="compare with the gold cartflow built")
    p.add_argument("--json", action="store_true")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    lake = str(pathlib.Path(a.lake).resolve())
    con = duckdb.connect()
    con.execute(f"SET threads = {a.threads}; SET TimeZone = 'UTC'")
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        build(con, lake, out)
        seconds = time.perf_counter() - started
    rows = con.execute("SELECT count(*) FROM silver.events").fetchall()[0][0]
    result = {"engine": f"duckdb {duckdb.__version__}", "threads": a.threads, "silver_rows": rows, "seconds": round(seconds, 2)}
    if a.check:
        differences = check(con, lake)
        result["differences"] = differences
    print(json.dumps(result) if a.json else f"duckdb {duckdb.__version__}: silver + gold from bronze, {rows:,} silver rows, {seconds:.2f} s on {a.threads} threads")
    if a.check and result["differences"]:
        print("\n".join(result["differences"]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

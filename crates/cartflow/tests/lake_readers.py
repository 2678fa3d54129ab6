"""The lake as other engines read it: DuckDB, pyarrow and polars, each the
way docs/lake.md says, with the Hive folders (`year=2019/month=10/day=01/
hour=06`, zero-padded as Kafka Connect writes them) typed as integers, so
`hour = 6` and `hour BETWEEN 2 AND 4` filter as they read. Each engine's
partition filter must select exactly the rows whose event_time is in that
hour. Usage: lake_readers.py LAKE_DIR. Prints JSON counts, then "ok"."""
import glob
import json
import os
import sys

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds

lake = sys.argv[1]
events = os.path.join(lake, "events")
files = glob.glob(os.path.join(events, "**", "*.parquet"), recursive=True)
assert files, f"no Parquet under {events}"

# DuckDB: hive_types makes the folders integers (by default it reads zero-padded values as VARCHAR,
# and then `hour = 6` silently finds nothing).
con = duckdb.connect()
parts = "{'year': INTEGER, 'month': INTEGER, 'day': INTEGER, 'hour': INTEGER}"
scan = f"read_parquet('{events}/**/*.parquet', hive_partitioning = true, hive_types = {parts})"
duck_six = con.execute(f"SELECT count(*) FROM {scan} WHERE hour = 6").fetchone()[0]
duck_range = con.execute(f"SELECT count(*) FROM {scan} WHERE hour BETWEEN 2 AND 4 AND day = 1").fetchone()[0]
duck_truth = con.execute(
    f"SELECT count(*) FILTER (WHERE hour(event_time AT TIME ZONE 'UTC') = 6), "
    f"count(*) FILTER (WHERE hour(event_time AT TIME ZONE 'UTC') BETWEEN 2 AND 4 AND day(event_time AT TIME ZONE 'UTC') = 1) "
    f"FROM {scan}"
).fetchone()
typed = con.execute(f"SELECT typeof(hour) FROM {scan} LIMIT 1").fetchone()[0]
assert typed == "INTEGER", typed
assert (duck_six, duck_range) == duck_truth, (duck_six, duck_range, duck_truth)

# pyarrow: a hive partitioning with an explicit schema.
partitioning = ds.partitioning(
    pa.schema([("year", pa.int16()), ("month", pa.int8()), ("day", pa.int8()), ("hour", pa.int8())]), flavor="hive"
)
dataset = ds.dataset(events, format="parquet", partitioning=partitioning)
arrow_six = dataset.count_rows(filter=ds.field("hour") == 6)
times = dataset.to_table(columns=["event_time"]).column("event_time").to_pylist()
assert arrow_six == sum(1 for t in times if t.hour == 6), arrow_six

# polars: hive_schema types the folders.
schema = {"year": pl.Int16, "month": pl.Int8, "day": pl.Int8, "hour": pl.Int8}
frame = pl.scan_parquet(f"{events}/**/*.parquet", hive_partitioning=True, hive_schema=schema)
polars_range = frame.filter(pl.col("hour").is_between(2, 4) & (pl.col("day") == 1)).select(pl.len()).collect().item()
polars_truth = (
    frame.filter(pl.col("event_time").dt.hour().is_between(2, 4) & (pl.col("event_time").dt.day() == 1))
    .select(pl.len())
    .collect()
    .item()
)
assert polars_range == polars_truth, (polars_range, polars_truth)
assert duck_six > 0 and duck_range > 0, (duck_six, duck_range)
print(json.dumps({"hour_6": duck_six, "hours_2_to_4": duck_range, "pyarrow_hour_6": arrow_six, "polars_hours_2_to_4": polars_range}))
print("ok")

-- Run once by the postgres image when its volume is new: the databases cartflow uses.
CREATE DATABASE shop;       -- the shop's own events table, captured by `cartflow cdc`
CREATE DATABASE mlflow;     -- the registry's store
CREATE DATABASE analytics;  -- `warehouse export` and `features build --postgres`, for BI tools

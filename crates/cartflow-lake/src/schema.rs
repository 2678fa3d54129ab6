//! The lake's Parquet schemas and how rows become Arrow batches.
//!
//! Hive partition columns (year, month, day, hour) live in the path only, so
//! DataFusion, DuckDB and pyarrow add them when reading with hive partitioning.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use cartflow_core::Event;

/// A validated event with where it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeEvent {
    pub event: Event,
    /// Partition and offset in `tracking.user_behavior.validated`.
    pub partition: u32,
    pub offset: u64,
    /// Debezium operation (c, r, u, d) for events that came by CDC.
    pub op: Option<String>,
}

/// An invalid record as the validator rejected it.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeInvalid {
    pub received_ms: i64,
    pub reason: String,
    pub field: String,
    pub message: String,
    /// `topic/partition/offset` of the rejected input.
    pub source: String,
    /// `file:line` when the record came from a CSV file.
    pub location: Option<String>,
    /// The record's bytes (as UTF-8, lossily).
    pub raw: String,
    pub partition: u32,
    pub offset: u64,
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_time", utc_micros(), false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("product_id", DataType::Int64, false),
        Field::new("category_id", DataType::Int64, false),
        Field::new("category_code", DataType::Utf8, true),
        Field::new("brand", DataType::Utf8, true),
        Field::new("price", DataType::Float64, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("user_session", DataType::Utf8, true),
        Field::new("_op", DataType::Utf8, true),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
    ]))
}

pub fn invalid_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("received_at", utc_micros(), false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("field", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("location", DataType::Utf8, true),
        Field::new("raw", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
    ]))
}

pub fn events_batch(rows: &[&LakeEvent]) -> RecordBatch {
    let n = rows.len();
    let mut time = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut kind = StringBuilder::with_capacity(n, n * 5);
    let (mut product, mut category, mut user) =
        (Int64Builder::with_capacity(n), Int64Builder::with_capacity(n), Int64Builder::with_capacity(n));
    let mut code = StringBuilder::with_capacity(n, n * 16);
    let mut brand = StringBuilder::with_capacity(n, n * 6);
    let mut price = Float64Builder::with_capacity(n);
    let mut session = StringBuilder::with_capacity(n, n * 36);
    let mut op = StringBuilder::with_capacity(n, 0);
    let mut partition = Int32Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    for r in rows {
        let e = &r.event;
        time.append_value(e.event_time);
        kind.append_value(e.event_type.as_str());
        product.append_value(e.product_id);
        category.append_value(e.category_id);
        code.append_option(e.category_code.as_deref());
        brand.append_option(e.brand.as_deref());
        price.append_value(e.price);
        user.append_value(e.user_id);
        session.append_option(e.user_session.as_deref());
        op.append_option(r.op.as_deref());
        partition.append_value(r.partition as i32);
        offset.append_value(r.offset as i64);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(kind.finish()),
        Arc::new(product.finish()),
        Arc::new(category.finish()),
        Arc::new(code.finish()),
        Arc::new(brand.finish()),
        Arc::new(price.finish()),
        Arc::new(user.finish()),
        Arc::new(session.finish()),
        Arc::new(op.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
    ];
    RecordBatch::try_new(events_schema(), columns).expect("columns match the events schema")
}

pub fn invalid_batch(rows: &[&LakeInvalid]) -> RecordBatch {
    let n = rows.len();
    let mut received = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut strings: Vec<StringBuilder> = (0..5).map(|_| StringBuilder::with_capacity(n, n * 16)).collect();
    let mut location = StringBuilder::with_capacity(n, 0);
    let mut partition = Int32Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    for r in rows {
        received.append_value(r.received_ms * 1000);
        for (b, v) in strings.iter_mut().zip([&r.reason, &r.field, &r.message, &r.source, &r.raw]) {
            b.append_value(v);
        }
        location.append_option(r.location.as_deref());
        partition.append_value(r.partition as i32);
        offset.append_value(r.offset as i64);
    }
    let mut s = strings.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut next = || s.next().expect("five string columns");
    let columns: Vec<ArrayRef> = vec![
        Arc::new(received.finish()),
        next(),
        next(),
        next(),
        next(),
        Arc::new(location.finish()),
        next(),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
    ];
    RecordBatch::try_new(invalid_schema(), columns).expect("columns match the invalid schema")
}

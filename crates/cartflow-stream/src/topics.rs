//! The topic names of the reference design, kept so that its tools and
//! dashboards find the same topics.

pub const RAW: &str = "tracking.raw_user_behavior";
pub const CDC: &str = "tracking_postgres_cdc.public.events";
/// A change capture's topic keeps changes in commit order: one partition.
/// Whoever touches it first (the capture, or a validator subscribing)
/// creates it so.
pub const CDC_PARTITIONS: u32 = 1;
pub const VALIDATED: &str = "tracking.user_behavior.validated";
pub const INVALID: &str = "tracking.user_behavior.invalid";

/// Header naming the input record an output came from: `topic/partition/offset`.
pub const SOURCE_POSITION: &str = "cartflow.src";
/// Header naming where a record was read from before the log: `file:line`.
pub const SOURCE_LOCATION: &str = "cartflow.source";
/// Header of records that are a CSV line rather than JSON (a broken row).
pub const CONTENT_TYPE: &str = "content-type";
pub const CSV_CONTENT_TYPE: &[u8] = b"text/csv";
/// Invalid-topic headers, as Kafka Connect's dead-letter queue does it: the
/// value keeps the original bytes, the headers say what was wrong.
pub const ERROR_REASON: &str = "cartflow.error.reason";
pub const ERROR_FIELD: &str = "cartflow.error.field";
pub const ERROR_MESSAGE: &str = "cartflow.error.message";
/// Debezium's operation of a CDC record (c, r, u, d) on validated records.
pub const CHANGE_OP: &str = "cartflow.op";

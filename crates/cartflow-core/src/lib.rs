//! cartflow's pure logic: the clickstream event, how it is read from CSV rows
//! and JSON messages (plain, Kafka-Connect and Debezium envelopes), and the
//! validation rules every path shares.
//!
//! Nothing here does I/O: the reader, the validator stage and the APIs call the
//! same functions, so an event means the same thing everywhere.

pub mod envelope;
pub mod event;
pub mod raw;
pub mod redact;
pub mod time;
pub mod validate;

pub use envelope::{ChangeOp, Message, parse_message};
pub use event::{CSV_HEADER, Event, EventType, FIELDS};
pub use raw::{RawEvent, Scalar};
pub use validate::{Invalid, InvalidReason, Rules, validate};

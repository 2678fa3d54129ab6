//! cartflow's pure logic: the clickstream event, how it is read from CSV rows
//! and JSON messages (plain, Kafka-Connect and Debezium envelopes), and the
//! validation rules every path shares.
//!
//! Nothing here does I/O: the reader, the validator stage and the APIs call the
//! same functions, so an event means the same thing everywhere.

pub mod envelope;
pub mod event;
pub mod partitioner;
pub mod position;
pub mod raw;
pub mod redact;
pub mod time;
pub mod validate;

pub use envelope::{ChangeOp, Message, parse_message};
pub use event::{CSV_HEADER, Event, EventType, FIELDS};
pub use position::{CommittedOffset, TopicPartition};
pub use raw::{RawEvent, Scalar};
pub use validate::{Invalid, InvalidReason, Rules, validate};

/// Makes a type whose configuration spelling is one string (`embedded`,
/// `kafka://…`) go through serde as that string, by its `FromStr` and
/// `Display`: put `#[serde(try_from = "String", into = "String")]` on it.
#[macro_export]
macro_rules! serde_as_string {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }

        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
    };
}

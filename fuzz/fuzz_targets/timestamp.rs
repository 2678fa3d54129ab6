//! Event timestamps (the dataset's form, RFC 3339, ISO 8601 without a zone):
//! what parses prints as RFC 3339 and parses back to the same instant.
#![no_main]

use cartflow_core::time::{parse_timestamp, rfc3339};

libfuzzer_sys::fuzz_target!(|s: &str| {
    if let Some(t) = parse_timestamp(s) {
        let text = rfc3339(t);
        assert_eq!(parse_timestamp(&text), Some(t), "{s:?} printed as {text}");
    }
});

//! One record's value as the validator reads it: JSON (a plain event, a
//! Kafka-Connect envelope, a Debezium change) or, when the first byte is
//! odd, a CSV line. A valid event written back as JSON validates to itself.
#![no_main]

use cartflow_core::Rules;
use cartflow_stream::validator::{Outcome, check_record};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&flag, value)) = data.split_first() else { return };
    let rules = Rules::default();
    if let Outcome::Valid(event, _) = check_record(value, flag & 1 == 1, &rules) {
        let mut json = Vec::new();
        cartflow_sources::json::event_json(&event, &mut json);
        match check_record(&json, false, &rules) {
            Outcome::Valid(again, _) => assert_eq!(again, event, "{}", String::from_utf8_lossy(&json)),
            other => panic!("{other:?} for {}", String::from_utf8_lossy(&json)),
        }
    }
});

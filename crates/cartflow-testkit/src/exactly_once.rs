//! Exactly once, checked by input position: every raw record has one output
//! across validated and invalid, and no output names an input that does not exist.

use std::collections::HashMap;

use cartflow_log::{EventLog, Record};

pub const RAW: &str = "tracking.raw_user_behavior";
pub const VALIDATED: &str = "tracking.user_behavior.validated";
pub const INVALID: &str = "tracking.user_behavior.invalid";

/// Every record of a topic on any log, read up to the ends it had when asked.
pub fn read_all(log: &dyn EventLog, topic: &str) -> Vec<Record> {
    let Some(info) = log.topic(topic).unwrap() else { return Vec::new() };
    let mut out = Vec::new();
    for p in info.partitions {
        let tp = cartflow_log::TopicPartition::new(topic, p.partition);
        out.extend(cartflow_log::read_range(log, &tp, p.start, p.end).unwrap());
    }
    out
}

/// Checks that every raw record of `log` has exactly one output across
/// validated and invalid; returns (valid, invalid) counts.
pub fn assert_exactly_once_on(log: &dyn EventLog) -> (usize, usize) {
    assert_each_input_once(log, &[RAW])
}

/// Checks that every record of the `inputs` topics has exactly one output
/// across validated and invalid, and that every output names one of them; a
/// record without a value (a Debezium tombstone) is no event and has none.
/// Returns (valid, invalid) counts.
pub fn assert_each_input_once(log: &dyn EventLog, inputs: &[&str]) -> (usize, usize) {
    let raw: Vec<Record> =
        inputs.iter().flat_map(|topic| read_all(log, topic)).filter(|r| !r.value.is_empty()).collect();
    let valid = read_all(log, VALIDATED);
    let invalid = read_all(log, INVALID);
    let mut seen: HashMap<String, u32> = HashMap::new();
    for r in valid.iter().chain(&invalid) {
        let src = r.header_str("cartflow.src").expect("every output names its input").to_owned();
        *seen.entry(src).or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(duplicated.is_empty(), "inputs with more than one output: {duplicated:?}");
    let missing: Vec<String> = raw
        .iter()
        .map(|r| format!("{}/{}/{}", r.topic, r.partition, r.offset))
        .filter(|k| !seen.contains_key(k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "inputs with no output ({} of {}): {missing:?}",
        raw.len() - seen.len().min(raw.len()),
        raw.len()
    );
    assert_eq!(seen.len(), raw.len(), "outputs for inputs that do not exist");
    (valid.len(), invalid.len())
}

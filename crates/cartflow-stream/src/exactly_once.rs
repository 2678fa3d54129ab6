//! Exactly-once output for a consume → transform → produce stage, on any log.
//!
//! The log delivers at least once: a stage that dies after its outputs are
//! durable but before it commits its input offsets will read those inputs
//! again. So every output carries its input's position (`cartflow.src`), and
//! every commit carries, as commit metadata, the output offsets from which
//! uncommitted outputs can appear (the "watermarks"). On start the stage scans
//! the outputs from the watermarks and skips every input whose output is
//! already there. Inputs map to exactly one output each, so "is there an
//! output for this input" is the whole question, whatever partition it went to.

use std::collections::{BTreeMap, HashMap, HashSet};

use cartflow_log::{CommittedOffset, Consumer, EventLog, Record, TopicPartition, for_each_in_range};

use crate::Result;
use crate::topics::SOURCE_POSITION;

#[derive(Default)]
pub(crate) struct ExactlyOnce {
    /// Output partition → offset from which this stage's uncommitted outputs may appear.
    watermarks: BTreeMap<TopicPartition, u64>,
    /// Input positions whose output is already durable.
    written: HashSet<(TopicPartition, u64)>,
}

/// `topic/partition/offset` of an input record.
pub(crate) fn source_position(r: &Record) -> String {
    format!("{}/{}/{}", r.topic, r.partition, r.offset)
}

fn parse_position(s: &str) -> Option<(TopicPartition, u64)> {
    let mut it = s.rsplitn(3, '/');
    let offset = it.next()?.parse().ok()?;
    let partition = it.next()?.parse().ok()?;
    Some((TopicPartition::new(it.next()?, partition), offset))
}

fn encode_watermarks(w: &BTreeMap<TopicPartition, u64>) -> String {
    let map: BTreeMap<String, u64> = w.iter().map(|(tp, o)| (format!("{}/{}", tp.topic, tp.partition), *o)).collect();
    serde_json::to_string(&map).expect("serializes")
}

fn decode_watermarks(s: &str) -> BTreeMap<TopicPartition, u64> {
    let map: BTreeMap<String, u64> = serde_json::from_str(s).unwrap_or_default();
    map.into_iter()
        .filter_map(|(k, o)| {
            let (topic, p) = k.rsplit_once('/')?;
            Some((TopicPartition::new(topic, p.parse().ok()?), o))
        })
        .collect()
}

impl ExactlyOnce {
    /// Finds the inputs (of the consumer's assignment, at or after its
    /// committed offsets) that already have an output in `outputs`.
    pub(crate) fn recover(log: &dyn EventLog, consumer: &mut dyn Consumer, outputs: &[&str]) -> Result<Self> {
        let committed: HashMap<TopicPartition, CommittedOffset> =
            consumer.committed()?.into_iter().map(|c| (TopicPartition::new(&c.topic, c.partition), c)).collect();
        let mut from: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        for c in committed.values() {
            for (tp, o) in decode_watermarks(&c.metadata) {
                let e = from.entry(tp).or_insert(o);
                *e = (*e).min(o);
            }
        }
        let assigned: HashSet<TopicPartition> = consumer.assignment().into_iter().collect();
        let mut written = HashSet::new();
        let mut watermarks = BTreeMap::new();
        for topic in outputs.iter().filter_map(|t| log.topic(t).transpose()) {
            let topic = topic?;
            for p in topic.partitions {
                let tp = TopicPartition::new(&topic.name, p.partition);
                let start = from.get(&tp).copied().unwrap_or(p.start).max(p.start);
                for_each_in_range(log, &tp, start, p.end, |r| {
                    let Some(pos) = r.header_str(SOURCE_POSITION).and_then(parse_position) else { return };
                    let done = committed.get(&pos.0).map_or(0, |c| c.offset);
                    if assigned.contains(&pos.0) && pos.1 >= done {
                        written.insert(pos);
                    }
                })?;
                watermarks.insert(tp, p.end);
            }
        }
        if !written.is_empty() {
            tracing::info!(
                records = written.len(),
                "recovered: these inputs already have durable outputs and will be skipped"
            );
        }
        Ok(ExactlyOnce { watermarks, written })
    }

    /// True (once) when the input at this position already has its output.
    pub(crate) fn already_written(&mut self, r: &Record) -> bool {
        !self.written.is_empty() && self.written.remove(&(r.topic_partition(), r.offset))
    }

    /// Records the output end offsets after a durable flush.
    pub(crate) fn flushed(&mut self, ends: &[(TopicPartition, u64)]) {
        for (tp, end) in ends {
            self.watermarks.insert(tp.clone(), *end);
        }
    }

    /// The consumer's positions to commit, with the watermarks as metadata.
    pub(crate) fn offsets(&self, input: &crate::driver::Subscription) -> Vec<CommittedOffset> {
        input.positions(&encode_watermarks(&self.watermarks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_watermarks_round_trip() {
        let tp = TopicPartition::new("tracking.raw_user_behavior", 3);
        assert_eq!(parse_position("tracking.raw_user_behavior/3/17"), Some((tp.clone(), 17)));
        let w: BTreeMap<_, _> = [(tp, 5u64)].into_iter().collect();
        assert_eq!(decode_watermarks(&encode_watermarks(&w)), w);
    }
}

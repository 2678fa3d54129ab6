//! What every `EventLog` must do: topics keep their partitions, keyed
//! records land where Kafka's client would put them and read back whole and
//! in order, a group resumes from what it committed (with its metadata), a
//! consumer seeks, reports positions and ends, and a deleted topic is gone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cartflow_log::{
    CommittedOffset, Consumer, ConsumerConfig, EventLog, OffsetReset, ProducerRecord, Record, TopicPartition,
    partition_for_key,
};

const PARTITIONS: u32 = 3;
const RECORDS: usize = 300;

/// What a backend keeps beyond the trait's minimum.
#[derive(Debug, Clone, Copy)]
pub struct Keeps {
    /// A commit's metadata comes back from `committed()` (Kafka keeps it; the
    /// nisshi 0.7 broker the tests run answers OffsetFetch with the offsets
    /// alone). Stages put their output watermarks there; without it their
    /// recovery scans each output partition from its start: correct, slower.
    pub commit_metadata: bool,
    /// `end_offsets()` is the partition's end before the consumer has read
    /// there, and `OffsetReset::Latest` starts there (nisshi, as tansu before
    /// it, answers ListOffsets(latest) with the last batch's first offset plus
    /// one; the Kafka consumer never reports less than it has read, so the end
    /// is exact once it has).
    pub exact_ends: bool,
}

/// Runs the suite on `log`, on topics and groups named after `prefix`
/// (so runs on a shared broker do not meet).
pub fn event_log_suite(log: &dyn EventLog, prefix: &str, keeps: Keeps) {
    let topic = format!("{prefix}.events");
    topics_keep_their_partitions(log, &topic);
    let sent = keyed_records_land_by_key_and_read_back_in_order(log, &topic);
    a_group_resumes_from_its_commit(log, &topic, &format!("{prefix}.group"), &sent, keeps);
    seek_position_and_ends(log, &topic, &sent, keeps);
    a_reader_from_latest_sees_only_new_records(log, &topic, keeps);
    a_deleted_topic_is_gone(log, &topic);
}

fn topics_keep_their_partitions(log: &dyn EventLog, topic: &str) {
    assert!(log.topic(topic).unwrap().is_none(), "{topic} exists before it was made");
    log.ensure_topic(topic, PARTITIONS).unwrap();
    log.ensure_topic(topic, PARTITIONS + 5).unwrap();
    let info = log.topic(topic).unwrap().expect("the topic after ensure_topic");
    assert_eq!(info.partitions.len() as u32, PARTITIONS, "ensure_topic on an existing topic changed its partitions");
    assert!(info.partitions.iter().all(|p| p.start == 0 && p.end == 0), "a new topic holds records: {info:?}");
    assert!(log.topics().unwrap().iter().any(|t| t.name == topic), "topics() does not list {topic}");
}

/// Sends keyed records with headers and returns them by partition, in order.
fn keyed_records_land_by_key_and_read_back_in_order(log: &dyn EventLog, topic: &str) -> BTreeMap<u32, Vec<Record>> {
    let mut producer = log.producer().unwrap();
    for i in 0..RECORDS {
        let key = format!("session-{}", i % 17);
        let value = format!("{{\"n\":{i}}}");
        let n = i.to_string();
        let headers: [(&str, &[u8]); 1] = [("cartflow.n", n.as_bytes())];
        let record = ProducerRecord {
            timestamp_ms: Some(1_600_000_000_000 + i as i64),
            ..ProducerRecord::new(topic, Some(key.as_bytes()), value.as_bytes())
        };
        producer.send(record.headers(&headers)).unwrap();
    }
    let ends = producer.flush().unwrap();
    let flushed: u64 = ends.iter().filter(|(tp, _)| &*tp.topic == topic).map(|(_, end)| end).sum();
    assert_eq!(flushed, RECORDS as u64, "flush's end offsets: {ends:?}");

    let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    for r in read(log, topic) {
        by_partition.entry(r.partition).or_default().push(r);
    }
    let mut seen = 0;
    for (partition, records) in &by_partition {
        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..records.len() as u64).collect::<Vec<_>>(), "offsets of partition {partition}");
        let mut last = None;
        for r in records {
            let key = r.key.as_deref().expect("a keyed record keeps its key");
            assert_eq!(partition_for_key(key, PARTITIONS), *partition, "key {:?}", String::from_utf8_lossy(key));
            let n: usize = r.header_str("cartflow.n").expect("headers arrive").parse().unwrap();
            assert_eq!(r.value, format!("{{\"n\":{n}}}").into_bytes(), "value of record {n}");
            assert_eq!(r.timestamp_ms, 1_600_000_000_000 + n as i64, "timestamp of record {n}");
            assert!(last.is_none_or(|l| l < n), "partition {partition} out of send order: {n} after {last:?}");
            last = Some(n);
            seen += 1;
        }
    }
    assert_eq!(seen, RECORDS, "records read back");
    by_partition
}

fn a_group_resumes_from_its_commit(
    log: &dyn EventLog,
    topic: &str,
    group: &str,
    sent: &BTreeMap<u32, Vec<Record>>,
    keeps: Keeps,
) {
    let half: Vec<CommittedOffset> = sent
        .iter()
        .map(|(p, records)| CommittedOffset {
            topic: topic.to_owned(),
            partition: *p,
            offset: records.len() as u64 / 2,
            metadata: format!("watermark-{p}"),
        })
        .collect();
    {
        let mut first = log.consumer(ConsumerConfig::group(group, &[topic])).unwrap();
        let got = poll_until(first.as_mut(), RECORDS);
        assert_eq!(got.len(), RECORDS, "a new group reads from the earliest offset");
        first.commit(&half).unwrap();
        let mut committed = first.committed().unwrap();
        committed.sort_by_key(|c| c.partition);
        if !keeps.commit_metadata {
            committed.iter_mut().zip(&half).for_each(|(c, h)| c.metadata.clone_from(&h.metadata));
        }
        assert_eq!(committed, half, "committed() after commit()");
    }
    let listed = log.groups().unwrap().into_iter().find(|g| g.group == group).expect("groups() lists the group");
    let offsets = |v: &[CommittedOffset]| v.iter().map(|c| (c.partition, c.offset)).collect::<Vec<_>>();
    let mut found = offsets(&listed.offsets);
    found.sort();
    assert_eq!(found, offsets(&half), "groups() lists the committed offsets");

    let mut second = log.consumer(ConsumerConfig::group(group, &[topic])).unwrap();
    let rest = poll_until(second.as_mut(), RECORDS - half.iter().map(|c| c.offset as usize).sum::<usize>());
    for c in &half {
        let offsets: Vec<u64> = rest.iter().filter(|r| r.partition == c.partition).map(|r| r.offset).collect();
        let end = sent[&c.partition].len() as u64;
        assert_eq!(offsets, (c.offset..end).collect::<Vec<_>>(), "partition {} resumed at its commit", c.partition);
    }
}

fn seek_position_and_ends(log: &dyn EventLog, topic: &str, sent: &BTreeMap<u32, Vec<Record>>, keeps: Keeps) {
    let (&partition, records) = sent.iter().max_by_key(|(_, r)| r.len()).expect("some partition has records");
    let tp = TopicPartition::new(topic, partition);
    let mut c = log.consumer(ConsumerConfig::assign(vec![tp.clone()])).unwrap();
    assert_eq!(c.assignment(), vec![tp.clone()]);
    let end = records.len() as u64;
    let ends = c.end_offsets().unwrap();
    if keeps.exact_ends {
        assert_eq!(ends, vec![(tp.clone(), end)], "end_offsets()");
    } else {
        assert!(ends.len() == 1 && (1..=end).contains(&ends[0].1), "end_offsets() {ends:?} of {end}");
    }
    c.seek(&tp, end - 2).unwrap();
    let got = poll_until(c.as_mut(), 2);
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![end - 2, end - 1], "records after seek");
    assert_eq!(c.position(&tp), Some(end), "position after reading to the end");
    assert_eq!(c.end_offsets().unwrap(), vec![(tp.clone(), end)], "end_offsets() once read to the end");
    assert_eq!(cartflow_log::read_range(log, &tp, 1, 3).unwrap().len(), 2, "read_range [1, 3)");
}

fn a_reader_from_latest_sees_only_new_records(log: &dyn EventLog, topic: &str, keeps: Keeps) {
    let mut c = log.consumer(ConsumerConfig::topics(&[topic], OffsetReset::Latest)).unwrap();
    // A remote consumer resolves "latest" on its first fetches: poll for a
    // second (and until it holds every partition) before anything new is sent.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1)
        || (c.assignment().len() < PARTITIONS as usize && started.elapsed() < Duration::from_secs(30))
    {
        let old = c.poll(100, Duration::from_millis(100)).unwrap();
        // Where ends are reported by the last batch, "latest" starts inside it.
        assert!(old.is_empty() || !keeps.exact_ends, "Latest read an old record: {:?}", old.first());
    }
    let mut producer = log.producer().unwrap();
    producer.send(ProducerRecord::new(topic, Some(b"new"), b"fresh")).unwrap();
    producer.flush().unwrap();
    let got = poll_until(c.as_mut(), 1);
    assert_eq!(got.len(), 1, "Latest saw the new record only");
    assert_eq!(got[0].value, b"fresh");
}

fn a_deleted_topic_is_gone(log: &dyn EventLog, topic: &str) {
    log.delete_topic(topic).unwrap();
    let started = Instant::now();
    // Kafka deletes asynchronously: the topic goes within a few seconds.
    while log.topic(topic).unwrap().is_some() {
        assert!(started.elapsed() < Duration::from_secs(30), "{topic} still there after delete_topic");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every record of `topic`, read outside any group.
fn read(log: &dyn EventLog, topic: &str) -> Vec<Record> {
    crate::read_all(log, topic)
}

/// Polls until `n` records have come (or 30 s have passed).
fn poll_until(c: &mut dyn Consumer, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let started = Instant::now();
    while out.len() < n && started.elapsed() < Duration::from_secs(30) {
        out.extend(c.poll(n - out.len(), Duration::from_millis(200)).unwrap());
    }
    out
}

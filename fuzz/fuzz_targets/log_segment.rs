//! The embedded log's segment files, damaged anywhere: whatever bytes a
//! partition's segments hold, reading them and appending after them ends
//! in records or a clear error, never a panic, a hang or a wrong offset.
//! Input: a flag byte (bit 0: give frames their checksums, so the fuzzer
//! reaches the frames' fields; bit 1: split the rest into two segments),
//! the second segment's base offset, the split point, then the bytes.
#![no_main]

use std::time::Duration;

use cartflow_log::{
    ConsumerConfig, EmbeddedLog, EmbeddedOptions, EventLog, FsyncPolicy, ProducerRecord, Record, TopicPartition,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [flags, base, split, bytes @ ..] = data else { return };
    let bytes = if flags & 1 == 1 { cartflow_fuzz::with_checksums(bytes) } else { bytes.to_vec() };
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions { default_partitions: 1, fsync: FsyncPolicy::Never, ..EmbeddedOptions::default() };
    let log = EmbeddedLog::open(dir.path(), opts).unwrap();
    log.ensure_topic("t", 1).unwrap();
    let partition = dir.path().join("topics/t/0");
    std::fs::create_dir_all(&partition).unwrap();
    let cut = if flags & 2 == 2 { (*split as usize * bytes.len() / 255).min(bytes.len()) } else { bytes.len() };
    std::fs::write(partition.join(format!("{:020}.log", 0)), &bytes[..cut]).unwrap();
    if cut < bytes.len() {
        std::fs::write(partition.join(format!("{:020}.log", *base as u64 + 1)), &bytes[cut..]).unwrap();
    }

    let Ok(before) = read_all(&log) else { return };
    for (i, r) in before.iter().enumerate() {
        assert_eq!(r.offset, before[0].offset + i as u64, "offsets run on without a gap");
    }
    let mut producer = log.producer().unwrap();
    producer.send(ProducerRecord::new("t", Some(b"k"), b"appended")).unwrap();
    let Ok(ends) = producer.flush() else { return };
    let after = read_all(&log).expect("what was read before an append reads after it");
    let last = after.last().expect("the appended record");
    assert_eq!(last.value, b"appended");
    assert_eq!(ends, vec![(TopicPartition::new("t", 0), last.offset + 1)]);
    assert!(after.len() > before.len(), "{} records, then {} after an append", before.len(), after.len());
});

/// Every record of the partition, from its start.
fn read_all(log: &EmbeddedLog) -> cartflow_log::Result<Vec<Record>> {
    let mut consumer = log.consumer(ConsumerConfig::assign(vec![TopicPartition::new("t", 0)]))?;
    let mut out = Vec::new();
    loop {
        let batch = consumer.poll(4096, Duration::ZERO)?;
        if batch.is_empty() {
            return Ok(out);
        }
        out.extend(batch);
    }
}

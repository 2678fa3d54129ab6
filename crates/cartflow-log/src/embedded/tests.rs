use std::io::Write;
use std::time::Duration;

use super::*;
use crate::{CommittedOffset, ConsumerConfig, EventLog, ProducerRecord, TopicPartition};

fn log_at(dir: &Path, opts: EmbeddedOptions) -> EmbeddedLog {
    EmbeddedLog::open(dir, opts).unwrap()
}

fn small_segments() -> EmbeddedOptions {
    EmbeddedOptions { segment_bytes: 4096, ..EmbeddedOptions::default() }
}

fn produce(log: &EmbeddedLog, topic: &str, n: usize, key: Option<&str>) {
    let mut p = log.producer().unwrap();
    for i in 0..n {
        let v = format!("value-{i}");
        p.send(ProducerRecord::new(topic, key.map(str::as_bytes), v.as_bytes())).unwrap();
        if i % 50 == 49 {
            p.flush().unwrap();
        }
    }
    p.flush().unwrap();
}

fn read_all(log: &EmbeddedLog, topic: &str) -> Vec<Record> {
    let mut c = log.consumer(ConsumerConfig::topics(&[topic], OffsetReset::Earliest)).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = c.poll(1000, Duration::from_millis(20)).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

#[test]
fn keys_keep_order_within_a_partition_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_at(dir.path(), small_segments());
    log.ensure_topic("t", 3).unwrap();
    produce(&log, "t", 500, Some("session-a"));
    let recs = read_all(&log, "t");
    assert_eq!(recs.len(), 500);
    let p = recs[0].partition;
    assert!(recs.iter().all(|r| r.partition == p), "one key, one partition");
    assert_eq!(p, partition_for_key(b"session-a", 3));
    for (i, r) in recs.iter().enumerate() {
        assert_eq!((r.offset, r.value.as_slice()), (i as u64, format!("value-{i}").as_bytes()));
    }
    let segments = segment::list_segments(&dir.path().join("topics/t").join(p.to_string())).unwrap();
    assert!(segments.len() > 3, "rolled into {segments:?}");
    let info = log.topics().unwrap();
    assert_eq!(info[0].partitions[p as usize].end, 500);
}

#[test]
fn groups_resume_from_their_commit_and_admit_one_member() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_at(dir.path(), EmbeddedOptions::default());
    produce(&log, "t", 100, None);
    let mut c = log.consumer(ConsumerConfig::group("g", &["t"])).unwrap();
    assert!(matches!(log.consumer(ConsumerConfig::group("g", &["t"])), Err(LogError::GroupBusy(_))));
    let mut seen = c.poll(40, Duration::from_millis(50)).unwrap();
    let commits: Vec<CommittedOffset> = c
        .assignment()
        .iter()
        .map(|tp| CommittedOffset {
            topic: tp.topic.to_string(),
            partition: tp.partition,
            offset: c.position(tp).unwrap(),
            metadata: "m".into(),
        })
        .collect();
    c.commit(&commits).unwrap();
    drop(c);
    let mut c = log.consumer(ConsumerConfig::group("g", &["t"])).unwrap();
    assert_eq!(c.committed().unwrap().len(), commits.len());
    loop {
        let batch = c.poll(1000, Duration::from_millis(20)).unwrap();
        if batch.is_empty() {
            break;
        }
        seen.extend(batch);
    }
    let mut values: Vec<_> = seen.iter().map(|r| String::from_utf8(r.value.clone()).unwrap()).collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 100, "every record once after resuming");
    let ends: u64 = c.end_offsets().unwrap().iter().map(|(_, e)| e).sum();
    assert_eq!(ends, 100);
    assert_eq!(log.groups().unwrap()[0].group, "g");
}

#[test]
fn a_torn_tail_is_cut_and_every_flushed_record_kept() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_at(dir.path(), EmbeddedOptions::default());
    log.ensure_topic("t", 1).unwrap();
    produce(&log, "t", 10, Some("k"));
    let seg = segment::segment_path(&dir.path().join("topics/t/0"), 0);
    let whole = std::fs::metadata(&seg).unwrap().len();

    // A crash mid-write: half of a frame at the tail.
    let mut frame = Vec::new();
    frame::encode(&mut frame, 0, Some(b"k"), &[], b"never flushed");
    std::fs::OpenOptions::new().append(true).open(&seg).unwrap().write_all(&frame[..frame.len() / 2]).unwrap();
    assert_eq!(read_all(&log, "t").len(), 10, "readers stop before the torn frame");

    // Reopen as a new process would; the next append cuts the tail first.
    let log = log_at(dir.path(), EmbeddedOptions::default());
    produce(&log, "t", 5, Some("k"));
    let recs = read_all(&log, "t");
    assert_eq!(recs.len(), 15);
    assert!(recs.iter().all(|r| r.value.starts_with(b"value-")));
    assert_eq!(recs.last().unwrap().offset, 14);

    // A whole-length frame with a bad checksum is cut the same way.
    let len = std::fs::metadata(&seg).unwrap().len();
    assert!(len > whole);
    let mut bad = frame.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    std::fs::OpenOptions::new().append(true).open(&seg).unwrap().write_all(&bad).unwrap();
    let log = log_at(dir.path(), EmbeddedOptions::default());
    produce(&log, "t", 1, Some("k"));
    assert_eq!(read_all(&log, "t").len(), 16);
    assert_eq!(log.topics().unwrap()[0].partitions[0].end, 16);
}

/// Reading every record of `topic` from its start, or the first error.
fn try_read_all(log: &EmbeddedLog, topic: &str) -> Result<Vec<Record>> {
    let mut c = log.consumer(ConsumerConfig::topics(&[topic], OffsetReset::Earliest))?;
    let mut out = Vec::new();
    loop {
        let batch = c.poll(1000, Duration::ZERO)?;
        if batch.is_empty() {
            return Ok(out);
        }
        out.extend(batch);
    }
}

#[test]
fn damage_before_whole_records_stops_readers_and_writers_and_cuts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_at(dir.path(), EmbeddedOptions::default());
    log.ensure_topic("t", 1).unwrap();
    produce(&log, "t", 10, Some("k"));
    let seg = segment::segment_path(&dir.path().join("topics/t/0"), 0);
    // A bit flipped in the fifth record's value: its checksum fails, five whole records follow.
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.windows(7).position(|w| w == b"value-4").unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();

    let e = try_read_all(&log, "t").unwrap_err().to_string();
    assert!(e.contains("00000000000000000000.log") && e.contains("offset 4") && e.contains("checksum"), "{e}");
    let mut p = log.producer().unwrap();
    p.send(ProducerRecord::new("t", Some(b"k"), b"after")).unwrap();
    let e = p.flush().unwrap_err().to_string();
    assert!(e.contains("offset 4") && e.contains("truncate it at byte"), "{e}");
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "the segment is left as it was");
}

#[test]
fn a_closed_segment_damaged_or_cut_short_is_named_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_at(dir.path(), small_segments());
    log.ensure_topic("t", 1).unwrap();
    produce(&log, "t", 300, Some("k"));
    let part = dir.path().join("topics/t/0");
    let bases = segment::list_segments(&part).unwrap();
    assert!(bases.len() > 2, "{bases:?}");
    let closed = segment::segment_path(&part, bases[1]);
    let whole = std::fs::read(&closed).unwrap();

    // Its last record cut off whole: the next segment starts past where it ends.
    let mut frames = vec![0];
    while let Some(len) = whole.get(frames[frames.len() - 1]..).and_then(|b| b.get(..4)) {
        let end = frames[frames.len() - 1] + 4 + u32::from_le_bytes(len.try_into().unwrap()) as usize;
        frames.push(end);
    }
    let last_start = frames[frames.len() - 3];
    std::fs::write(&closed, &whole[..last_start]).unwrap();
    let e = try_read_all(&log, "t").unwrap_err().to_string();
    assert!(e.contains(&format!("{:020}.log", bases[1])) && e.contains("records are missing"), "{e}");

    // Or cut inside it.
    std::fs::write(&closed, &whole[..whole.len() - 20]).unwrap();
    let e = try_read_all(&log, "t").unwrap_err().to_string();
    assert!(e.contains("incomplete frame") && e.contains("truncate it at byte"), "{e}");

    // Or a byte of its second record changed.
    let mut damaged = whole.clone();
    damaged[40] ^= 0x80;
    std::fs::write(&closed, &damaged).unwrap();
    let e = try_read_all(&log, "t").unwrap_err().to_string();
    assert!(e.contains(&format!("offset {}", bases[1])) || e.contains(&format!("offset {}", bases[1] + 1)), "{e}");

    // But a torn record after its last whole one (a writer that died mid-append
    // and never came back to cut it) held no record: the next segment starts
    // right after, and readers go on there. Found by the log_segment fuzz target.
    let mut torn = whole.clone();
    torn.extend_from_slice(&whole[..20]);
    std::fs::write(&closed, &torn).unwrap();
    assert_eq!(try_read_all(&log, "t").unwrap().len(), 300, "a torn tail before the next segment holds no record");

    std::fs::write(&closed, &whole).unwrap();
    assert_eq!(try_read_all(&log, "t").unwrap().len(), 300, "restored, it reads whole");
}

#[test]
fn retention_by_size_removes_old_segments_and_readers_start_at_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions { retention_bytes: Some(8192), ..small_segments() };
    let log = log_at(dir.path(), opts);
    log.ensure_topic("t", 1).unwrap();
    for _ in 0..20 {
        produce(&log, "t", 50, Some("k"));
    }
    let info = &log.topics().unwrap()[0].partitions[0];
    assert!(info.start > 0, "old segments removed: {info:?}");
    assert_eq!(info.end, 1000);
    let recs = read_all(&log, "t");
    assert_eq!(recs.first().unwrap().offset, info.start);
    assert_eq!(recs.len() as u64, info.end - info.start);
}

/// A reader slower than retention: the segments after the one it reads are
/// removed under it. It goes on from the log start with a warning, as a
/// consumer positioned below the log start does (Kafka's reset to earliest),
/// instead of taking the gap for damage (found by benches/soak.sh).
#[test]
fn a_reader_behind_retention_goes_on_from_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions { retention_bytes: Some(8192), ..small_segments() };
    let log = log_at(dir.path(), opts);
    log.ensure_topic("t", 1).unwrap();
    produce(&log, "t", 50, Some("k"));
    let mut consumer = log.consumer(ConsumerConfig::assign(vec![TopicPartition::new("t", 0)])).unwrap();
    let first = consumer.poll(10, Duration::ZERO).unwrap();
    assert_eq!(first.last().unwrap().offset, 9);
    for _ in 0..20 {
        produce(&log, "t", 50, Some("k"));
    }
    let start = log.topics().unwrap()[0].partitions[0].start;
    assert!(start > 50, "retention removed the segments after the reader's: {start}");
    let mut rest = Vec::new();
    loop {
        let batch = consumer.poll(4096, Duration::ZERO).expect("no damage: retention removed those records");
        if batch.is_empty() {
            break;
        }
        rest.extend(batch);
    }
    // What the open segment still held, then the log from its start on.
    let offsets: Vec<u64> = rest.iter().map(|r| r.offset).collect();
    let jump = offsets.windows(2).position(|w| w[1] != w[0] + 1).map_or(0, |i| i + 1);
    assert!(offsets[..jump].iter().all(|&o| o < start), "{offsets:?}");
    assert_eq!(offsets[jump..], (start..1050).collect::<Vec<_>>()[..]);
}

#[test]
fn two_producers_append_to_one_partition_without_losing_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(log_at(dir.path(), small_segments()));
    log.ensure_topic("t", 1).unwrap();
    let handles: Vec<_> = (0..2)
        .map(|w| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut p = log.producer().unwrap();
                for i in 0..300 {
                    let v = format!("{w}-{i}");
                    p.send(ProducerRecord::new("t", Some(b"k"), v.as_bytes())).unwrap();
                    if i % 7 == 0 {
                        p.flush().unwrap();
                    }
                }
                p.flush().unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let recs = read_all(&log, "t");
    assert_eq!(recs.len(), 600);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
    }
}

/// A reader that catches a record half written, and finds it whole with
/// more after it when it looks again, is behind a writer, not at damage.
#[test]
fn a_reader_tailing_a_busy_writer_reads_every_record_and_sees_no_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(log_at(dir.path(), EmbeddedOptions::default()));
    log.ensure_topic("t", 1).unwrap();
    const RECORDS: usize = 2_000;
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut p = log.producer().unwrap();
            let value = vec![b'x'; 100_000];
            for _ in 0..RECORDS {
                p.send(ProducerRecord::new("t", None, &value)).unwrap();
                p.flush().unwrap();
            }
        })
    };
    let mut c = log.consumer(ConsumerConfig::topics(&["t"], OffsetReset::Earliest)).unwrap();
    let mut read = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while read < RECORDS {
        assert!(std::time::Instant::now() < deadline, "read {read} of {RECORDS}");
        read += c.poll(1000, Duration::from_millis(1)).expect("a write in progress taken for damage").len();
    }
    writer.join().unwrap();
}

#[test]
fn read_range_and_seek() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_at(dir.path(), small_segments());
    log.ensure_topic("t", 1).unwrap();
    produce(&log, "t", 300, Some("k"));
    let tp = TopicPartition::new("t", 0);
    let recs = crate::read_range(&log, &tp, 120, 130).unwrap();
    assert_eq!(recs.iter().map(|r| r.offset).collect::<Vec<_>>(), (120..130).collect::<Vec<_>>());
}

#[test]
fn fsync_policy_parses() {
    assert_eq!("flush".parse(), Ok(FsyncPolicy::EveryFlush));
    assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
    assert_eq!("250ms".parse(), Ok(FsyncPolicy::Interval(Duration::from_millis(250))));
    assert_eq!("2s".parse(), Ok(FsyncPolicy::Interval(Duration::from_secs(2))));
    assert!("often".parse::<FsyncPolicy>().is_err());
}

#[test]
fn a_seek_far_into_a_partition_returns_records_on_the_first_poll() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_at(dir.path(), EmbeddedOptions::default());
    log.ensure_topic("t", 1).unwrap();
    produce(&log, "t", 60_000, Some("k"));
    let tp = TopicPartition::new("t", 0);
    let mut c = log.consumer(ConsumerConfig::assign(vec![tp.clone()])).unwrap();
    c.seek(&tp, 55_000).unwrap();
    let batch = c.poll(100, Duration::from_millis(1)).unwrap();
    assert_eq!(batch.len(), 100);
    assert_eq!(batch[0].offset, 55_000);
}

#[test]
fn a_deleted_topic_is_gone_with_its_committed_offsets_and_comes_back_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).unwrap();
    log.ensure_topic("wrong", 4).unwrap();
    let mut p = log.producer().unwrap();
    p.send(ProducerRecord::new("wrong", Some(b"k"), b"v")).unwrap();
    p.flush().unwrap();
    {
        let mut c = log.consumer(ConsumerConfig::group("g", &["wrong"])).unwrap();
        c.commit(&[CommittedOffset { topic: "wrong".into(), partition: 0, offset: 1, metadata: String::new() }])
            .unwrap();
        // A running member may be reading it: refused.
        assert!(matches!(log.delete_topic("wrong"), Err(LogError::TopicInUse { .. })));
    }
    log.delete_topic("wrong").unwrap();
    assert!(log.topic("wrong").unwrap().is_none());
    assert!(log.groups().unwrap().iter().all(|g| g.offsets.iter().all(|o| o.topic != "wrong")));
    assert!(matches!(log.delete_topic("wrong"), Err(LogError::NoTopic(_))));
    log.ensure_topic("wrong", 1).unwrap();
    assert_eq!(log.topic("wrong").unwrap().unwrap().partitions.len(), 1);
}

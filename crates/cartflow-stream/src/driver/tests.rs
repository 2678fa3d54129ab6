//! The driver on the embedded log in a temporary directory, with a small
//! stage that copies its input to an output topic: drain, Ctrl-C, commit
//! ordering after a failed write, and a rebalance.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cartflow_log::{
    CommittedOffset, Consumer, ConsumerConfig, EmbeddedLog, EmbeddedOptions, EventLog, GroupInfo, Producer,
    ProducerRecord, Rebalance, Record, TopicInfo, TopicPartition,
};

use super::{Stage, Subscription, drive};
use crate::{Result, StageControl, StageError};

const INPUT: &str = "in";
const OUTPUT: &str = "out";
const GROUP: &str = "copier";

/// Copies each record to `out`; buffers until `every` records (or the end),
/// can be told to fail its next write, and remembers what it was told.
struct Copier<'a> {
    input: PhantomData<Subscription<'a>>,
    producer: Box<dyn Producer>,
    every: usize,
    buffered: usize,
    copied: u64,
    fail_next_write: bool,
    assigned: Vec<Option<usize>>,
    finished: bool,
}

impl Copier<'_> {
    fn new(log: &dyn EventLog, every: usize) -> Self {
        Copier {
            input: PhantomData,
            producer: log.producer().unwrap(),
            every,
            buffered: 0,
            copied: 0,
            fail_next_write: false,
            assigned: Vec::new(),
            finished: false,
        }
    }
}

impl<'a> Stage for Copier<'a> {
    type Input = Subscription<'a>;
    type Stats = u64;
    const NAME: &'static str = "copier";

    fn batch_size(&self) -> usize {
        100
    }

    fn poll_wait(&self) -> Duration {
        Duration::from_millis(20)
    }

    fn assigned(&mut self, _: &mut Subscription<'a>, moved: Option<&Rebalance>) -> Result<()> {
        self.assigned.push(moved.map(|m| m.gained.len()));
        Ok(())
    }

    fn process(&mut self, batch: Vec<Record>, _: &Subscription<'a>) -> Result<()> {
        for r in &batch {
            self.producer.send(ProducerRecord::new(OUTPUT, r.key.as_deref(), &r.value))?;
        }
        self.buffered += batch.len();
        Ok(())
    }

    fn due(&self, finishing: bool) -> bool {
        self.buffered > 0 && (self.buffered >= self.every || finishing)
    }

    fn write(&mut self, input: &Subscription<'a>) -> Result<Vec<CommittedOffset>> {
        if std::mem::take(&mut self.fail_next_write) {
            return Err(StageError::Config("the store is down".into()));
        }
        self.producer.flush()?;
        self.copied += self.buffered as u64;
        self.buffered = 0;
        Ok(input.positions("copied"))
    }

    fn tick(&mut self, finishing: bool) -> Result<()> {
        self.finished |= finishing;
        Ok(())
    }

    fn stats(&mut self, _lag: u64) -> &u64 {
        &self.copied
    }
}

fn join(log: &dyn EventLog) -> Subscription<'_> {
    Subscription::join(log, GROUP, &[INPUT]).unwrap()
}

fn log_with(records: usize) -> (tempfile::TempDir, EmbeddedLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions { default_partitions: 2, ..Default::default() }).unwrap();
    log.ensure_topic(INPUT, 2).unwrap();
    produce(&log, 0..records);
    (dir, log)
}

fn produce(log: &dyn EventLog, keys: std::ops::Range<usize>) {
    let mut p = log.producer().unwrap();
    for i in keys {
        p.send(ProducerRecord::new(INPUT, Some(i.to_string().as_bytes()), b"x")).unwrap();
    }
    p.flush().unwrap();
}

fn committed(log: &dyn EventLog) -> u64 {
    log.groups().unwrap().iter().filter(|g| g.group == GROUP).flat_map(|g| &g.offsets).map(|o| o.offset).sum()
}

fn records(log: &dyn EventLog, topic: &str) -> u64 {
    log.topic(topic).unwrap().map_or(0, |t| t.records())
}

#[test]
fn draining_stops_once_caught_up_with_everything_written_and_committed() {
    let (_dir, log) = log_with(1000);
    let mut stage = Copier::new(&log, 250);
    let mut reports = 0;
    let copied = drive(&mut join(&log), &mut stage, &StageControl::new(true), &mut |_| reports += 1).unwrap();
    assert_eq!((copied, records(&log, OUTPUT), committed(&log)), (1000, 1000, 1000));
    assert!(stage.finished && reports > 0);
    assert_eq!(stage.assigned, vec![None], "assigned once, at start");
}

#[test]
fn ctrl_c_stops_after_the_round_and_writes_what_was_taken() {
    let (_dir, log) = log_with(300);
    let control = StageControl::new(false);
    // Never due before the end: what was taken is written on the way out.
    let mut stage = Copier::new(&log, usize::MAX);
    let stop = control.clone();
    let seen = AtomicUsize::new(0);
    let copied = drive(&mut join(&log), &mut stage, &control, &mut |_| {
        // Stop once the stage has caught up (the second report after records came in).
        if seen.fetch_add(1, Ordering::SeqCst) >= 3 {
            stop.stop();
        }
    })
    .unwrap();
    assert_eq!((copied, committed(&log)), (300, 300));
}

#[test]
fn a_failed_write_commits_nothing_and_a_restart_takes_the_inputs_again() {
    let (_dir, log) = log_with(500);
    let mut first = Copier::new(&log, 100);
    first.fail_next_write = true;
    let failed = drive(&mut join(&log), &mut first, &StageControl::new(true), &mut |_| {});
    assert!(matches!(failed, Err(StageError::Config(m)) if m.contains("down")));
    assert_eq!(committed(&log), 0, "offsets committed before their outputs were durable");
    let mut second = Copier::new(&log, 100);
    assert_eq!(drive(&mut join(&log), &mut second, &StageControl::new(true), &mut |_| {}).unwrap(), 500);
    assert_eq!(committed(&log), 500);
}

/// The embedded log with one rebalance handed to the consumer after its
/// first poll, as Kafka hands them (the embedded log has one member per group):
/// the records of the gained partition polled with it are dropped, and read
/// again from where the partition was handed over. It notes how each commit
/// was asked for.
struct Rebalancing<'a> {
    log: &'a EmbeddedLog,
    polled: Arc<Mutex<bool>>,
    commits: Arc<Mutex<Vec<&'static str>>>,
}

struct RebalancingConsumer {
    inner: Box<dyn Consumer>,
    polled: Arc<Mutex<bool>>,
    handed: bool,
    commits: Arc<Mutex<Vec<&'static str>>>,
}

impl Consumer for RebalancingConsumer {
    fn poll(&mut self, max: usize, timeout: Duration) -> cartflow_log::Result<Vec<Record>> {
        *self.polled.lock().unwrap() = true;
        self.inner.poll(max, timeout)
    }
    fn commit(&mut self, offsets: &[CommittedOffset]) -> cartflow_log::Result<()> {
        self.commits.lock().unwrap().push("waited");
        self.inner.commit(offsets)
    }
    fn commit_async(&mut self, offsets: &[CommittedOffset]) -> cartflow_log::Result<()> {
        self.commits.lock().unwrap().push("async");
        self.inner.commit(offsets)
    }
    fn committed(&mut self) -> cartflow_log::Result<Vec<CommittedOffset>> {
        self.inner.committed()
    }
    fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.assignment()
    }
    fn seek(&mut self, tp: &TopicPartition, offset: u64) -> cartflow_log::Result<()> {
        self.inner.seek(tp, offset)
    }
    fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.inner.position(tp)
    }
    fn end_offsets(&mut self) -> cartflow_log::Result<Vec<(TopicPartition, u64)>> {
        self.inner.end_offsets()
    }
    fn take_rebalance(&mut self) -> Option<Rebalance> {
        if self.handed || !*self.polled.lock().unwrap() {
            return None;
        }
        self.handed = true;
        // As Kafka hands a gained partition: at the group's committed offset.
        let gained = TopicPartition::new(INPUT, 1);
        let committed = self.inner.committed().ok()?;
        let at = committed.iter().find(|o| o.topic == INPUT && o.partition == 1).map_or(0, |o| o.offset);
        self.inner.seek(&gained, at).ok()?;
        Some(Rebalance { gained: vec![gained], lost: Vec::new() })
    }
}

impl EventLog for Rebalancing<'_> {
    fn ensure_topic(&self, topic: &str, partitions: u32) -> cartflow_log::Result<()> {
        self.log.ensure_topic(topic, partitions)
    }
    fn topics(&self) -> cartflow_log::Result<Vec<TopicInfo>> {
        self.log.topics()
    }
    fn topic(&self, name: &str) -> cartflow_log::Result<Option<TopicInfo>> {
        self.log.topic(name)
    }
    fn groups(&self) -> cartflow_log::Result<Vec<GroupInfo>> {
        self.log.groups()
    }
    fn delete_topic(&self, topic: &str) -> cartflow_log::Result<()> {
        self.log.delete_topic(topic)
    }
    fn producer(&self) -> cartflow_log::Result<Box<dyn Producer>> {
        self.log.producer()
    }
    fn consumer(&self, config: ConsumerConfig) -> cartflow_log::Result<Box<dyn Consumer>> {
        let inner = self.log.consumer(config)?;
        let (polled, commits) = (self.polled.clone(), self.commits.clone());
        Ok(Box::new(RebalancingConsumer { inner, polled, handed: false, commits }))
    }
}

#[test]
fn a_rebalance_reaches_the_stage_before_it_reads_on() {
    let (_dir, log) = log_with(400);
    let rebalancing = Rebalancing { log: &log, polled: Arc::default(), commits: Arc::default() };
    let mut stage = Copier::new(&log, 50);
    let copied = drive(&mut join(&rebalancing), &mut stage, &StageControl::new(true), &mut |_| {}).unwrap();
    assert_eq!(stage.assigned, vec![None, Some(1)], "at start, then the partition gained");
    assert_eq!((copied, committed(&log)), (400, 400));
    // Running, no commit is waited for; the one on the way out is.
    let commits = rebalancing.commits.lock().unwrap();
    assert!(commits.len() > 2, "{commits:?}");
    assert_eq!(commits.iter().filter(|m| **m == "waited").count(), 1, "{commits:?}");
    assert_eq!(commits.last(), Some(&"waited"));
}

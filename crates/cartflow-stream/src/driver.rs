//! The loop every stage shares, written once (Vector's `vector-stream`
//! driver is the model): poll the input, hand rebalances to the stage,
//! measure lag once a second, report progress, stop on Ctrl-C or, draining,
//! once caught up, make the stage's outputs durable *before* its input
//! position is committed, and count what came in and how long a batch took
//! under the shared metric names. A stage brings only its own logic
//! ([`Stage`]) and reads an [`Input`]: a consumer group on the event log
//! ([`Subscription`]: the validator, the lake sink, the feature streamer) or
//! PostgreSQL's replication slot (the CDC capture, in `cartflow-cdc`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cartflow_log::{CommittedOffset, Consumer, ConsumerConfig, EventLog, Rebalance, Record};

use crate::metrics::{BATCH_SECONDS, EVENTS_IN, FRESHNESS, Running, measure_lag};
use crate::{Result, StageControl};

/// Where a stage's records come from, and where its progress is kept.
pub trait Input {
    /// One record as the stage receives it.
    type Item;
    /// What the stage hands back to commit once its outputs are durable.
    type Position: Clone;

    /// Up to `max` items, waiting up to `wait` when there are none.
    fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Self::Item>>;

    /// What moved since the last poll (only consumer groups move).
    fn take_rebalance(&mut self) -> Option<Rebalance> {
        None
    }

    /// Drops the items of partitions that `moved` from a batch polled before
    /// the stage took up the change: a lost partition is no longer this
    /// stage's, and a gained one is read again from where the stage put it.
    fn drop_moved(&self, _batch: &mut Vec<Self::Item>, _moved: &Rebalance) {}

    /// Items known to be waiting, summed; sets the stage's lag gauges.
    fn lag(&mut self, stage: &'static str) -> Result<u64>;

    /// Counts a batch under `cartflow_events_in_total`.
    fn count(&self, stage: &'static str, batch: &[Self::Item]);

    /// When an item entered cartflow (milliseconds since the epoch), for
    /// `cartflow_freshness_seconds`; `None` where the input does not say.
    fn entered_ms(&self, _item: &Self::Item) -> Option<i64> {
        None
    }

    /// The item's W3C `traceparent` header, which the driver replaces with
    /// the stage's own span so that what the stage writes on continues the
    /// trace; `None` where the item is not traced.
    fn traceparent<'i>(&self, _item: &'i mut Self::Item) -> Option<&'i mut Vec<u8>> {
        None
    }

    /// Where the item was read, for its record span.
    fn read_at(&self, _item: &Self::Item) -> Option<cartflow_trace::ReadAt> {
        None
    }

    /// The item's size in bytes, for the batch span.
    fn bytes(&self, _item: &Self::Item) -> usize {
        0
    }

    /// Records that everything before `position` is done.
    fn commit(&mut self, position: Self::Position) -> Result<()>;

    /// Like `commit`, without waiting for the input to have it: the driver
    /// commits so while it runs, and waits on its last round. Every stage
    /// finds where it resumes from its outputs, so a commit lost in a crash
    /// only replays what the stage's recovery skips.
    fn commit_async(&mut self, position: Self::Position) -> Result<()> {
        self.commit(position)
    }
}

/// A stage's own logic.
pub trait Stage {
    type Input: Input;
    type Stats: Clone;
    /// Its name in metrics, logs and `/status` (`validate`, `lake-sink`, `features`, `cdc`).
    const NAME: &'static str;

    /// Items asked of one poll.
    fn batch_size(&self) -> usize;

    /// How long a poll waits for its first item.
    fn poll_wait(&self) -> Duration {
        Duration::from_millis(200)
    }

    /// Positions the input and recovers the stage's state: once at start
    /// (`moved` is `None`), and after each rebalance, with what moved.
    fn assigned(&mut self, input: &mut Self::Input, moved: Option<&Rebalance>) -> Result<()>;

    /// Takes one batch of items (in order per partition).
    fn process(&mut self, batch: Vec<<Self::Input as Input>::Item>, input: &Self::Input) -> Result<()>;

    /// Whether what `process` took should be made durable now; `finishing`
    /// on the loop's last round.
    fn due(&self, finishing: bool) -> bool;

    /// Makes the outputs durable and returns the input position that is now
    /// safe to commit. The driver commits it only after this returns Ok.
    fn write(&mut self, input: &Self::Input) -> Result<<Self::Input as Input>::Position>;

    /// Work of every round, after any commit (snapshots, alerts); `finishing` on the last.
    fn tick(&mut self, _finishing: bool) -> Result<()> {
        Ok(())
    }

    /// The stage's counts, with the lag just measured.
    fn stats(&mut self, lag: u64) -> &Self::Stats;

    /// Outputs so far (records written on, rows landed, events counted), for the batch span.
    fn outputs(&self) -> u64 {
        0
    }
}

/// How often the lag is measured while records flow (always when idle).
const LAG_EVERY: Duration = Duration::from_secs(1);
/// One item in this many is timed for `cartflow_freshness_seconds`: enough
/// for quantiles, and no cost per record.
const FRESHNESS_SAMPLE: usize = 16;

/// Runs `stage` over `input` until `control` stops it (or, draining, until
/// it has caught up). Returns its last counts.
pub fn drive<S: Stage>(
    input: &mut S::Input,
    stage: &mut S,
    control: &StageControl,
    progress: &mut dyn FnMut(&S::Stats),
) -> Result<S::Stats> {
    let _running = Running::start(S::NAME);
    stage.assigned(input, None)?;
    let mut lag = 0;
    let mut measured: Option<Instant> = None;
    // Time spent on what the next commit makes durable, for the batch histogram.
    let mut work = Duration::ZERO;
    // When sampled items of the next commit entered cartflow.
    let mut entered: Vec<i64> = Vec::new();
    let mut traced = Traced::default();
    // The last position committed without waiting: waited for on the way out.
    let mut unsettled = None;
    loop {
        let stopped = control.stopped();
        let mut batch = if stopped { Vec::new() } else { input.poll(stage.batch_size(), stage.poll_wait())? };
        if let Some(moved) = input.take_rebalance() {
            tracing::info!(stage = S::NAME, gained = moved.gained.len(), lost = moved.lost.len(), "partitions moved");
            input.drop_moved(&mut batch, &moved);
            stage.assigned(input, Some(&moved))?;
        }
        let idle = batch.is_empty();
        if !idle {
            input.count(S::NAME, &batch);
            entered.extend(batch.iter().step_by(FRESHNESS_SAMPLE).filter_map(|item| input.entered_ms(item)));
            traced.take(S::NAME, &mut batch, input, stage.outputs());
            let started = Instant::now();
            let _in_batch = traced.batch.enter();
            stage.process(batch, input)?;
            work += started.elapsed();
        }
        if idle || measured.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
            lag = input.lag(S::NAME)?;
            measured = Some(Instant::now());
            progress(stage.stats(lag));
        }
        let finishing = stopped || (idle && lag == 0 && control.draining());
        if stage.due(finishing) {
            let started = Instant::now();
            let commit = traced.commit(S::NAME);
            let _in_commit = commit.enter();
            let position = stage.write(input)?;
            // Durable outputs first, then the input position: a crash between
            // the two replays inputs, which the stage's recovery skips. Not
            // waiting for the commit takes a round trip to the broker off
            // every batch's way (freshness); the last one is waited for.
            if finishing {
                unsettled = None;
                input.commit(position)?;
            } else {
                input.commit_async(position.clone())?;
                unsettled = Some(position);
            }
            traced.committed(started.elapsed(), stage.outputs());
            work += started.elapsed();
            metrics::histogram!(BATCH_SECONDS, "stage" => S::NAME).record(work.as_secs_f64());
            let now = cartflow_core::time::now_micros() / 1000;
            let freshness = metrics::histogram!(FRESHNESS, "stage" => S::NAME);
            for t in entered.drain(..) {
                freshness.record((now - t).max(0) as f64 / 1000.0);
            }
            work = Duration::ZERO;
        }
        if finishing && let Some(position) = unsettled.take() {
            input.commit(position)?;
        }
        stage.tick(finishing)?;
        if finishing {
            break;
        }
    }
    let stats = stage.stats(lag).clone();
    progress(&stats);
    Ok(stats)
}

/// The spans of the batch in progress, when traces are on: the batch's own
/// and one per traced record, all ended by the commit that makes the
/// batch's outputs durable.
struct Traced {
    batch: tracing::Span,
    records: u64,
    bytes: u64,
    outputs_before: u64,
    following: Vec<cartflow_trace::RecordSpan>,
}

impl Default for Traced {
    fn default() -> Self {
        Traced { batch: tracing::Span::none(), records: 0, bytes: 0, outputs_before: 0, following: Vec::new() }
    }
}

impl Traced {
    fn take<I: Input>(&mut self, stage: &'static str, batch: &mut [I::Item], input: &I, outputs: u64) {
        if !cartflow_trace::enabled() {
            return;
        }
        if self.batch.is_none() {
            self.batch = cartflow_trace::batch(stage);
            self.outputs_before = outputs;
        }
        self.records += batch.len() as u64;
        for item in batch {
            self.bytes += input.bytes(item) as u64;
            if input.traceparent(item).is_none() {
                continue;
            }
            let at = input.read_at(item);
            if let Some(header) = input.traceparent(item)
                && let Some(span) = cartflow_trace::RecordSpan::follow(stage, header, at, &self.batch)
            {
                *header = span.traceparent().into_bytes();
                self.following.push(span);
            }
        }
    }

    /// The span of making the batch durable, inside the batch's.
    fn commit(&self, stage: &'static str) -> tracing::Span {
        if self.batch.is_none() {
            return tracing::Span::none();
        }
        tracing::info_span!(parent: &self.batch, "commit", otel.name = %format_args!("{stage} commit"))
    }

    fn committed(&mut self, took: Duration, outputs: u64) {
        if self.batch.is_none() {
            return;
        }
        self.batch.record("records", self.records);
        self.batch.record("bytes", self.bytes);
        self.batch.record("outputs", outputs - self.outputs_before);
        self.batch.record("commit_ms", took.as_secs_f64() * 1000.0);
        for span in self.following.drain(..) {
            span.end();
        }
        *self = Traced::default();
    }
}

/// A member of a consumer group on the event log.
pub struct Subscription<'a> {
    pub log: &'a dyn EventLog,
    pub consumer: Box<dyn Consumer>,
}

impl<'a> Subscription<'a> {
    /// Joins `group` on `topics`.
    pub fn join(log: &'a dyn EventLog, group: &str, topics: &[&str]) -> Result<Self> {
        Ok(Subscription { log, consumer: log.consumer(ConsumerConfig::group(group, topics))? })
    }

    /// The consumer's position in every partition it holds, as offsets to commit.
    pub fn positions(&self, metadata: &str) -> Vec<CommittedOffset> {
        let c = self.consumer.as_ref();
        c.assignment()
            .iter()
            .filter_map(|tp| {
                Some(CommittedOffset {
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                    offset: c.position(tp)?,
                    metadata: metadata.to_owned(),
                })
            })
            .collect()
    }
}

impl Input for Subscription<'_> {
    type Item = Record;
    type Position = Vec<CommittedOffset>;

    fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>> {
        Ok(self.consumer.poll(max, wait)?)
    }

    fn take_rebalance(&mut self) -> Option<Rebalance> {
        self.consumer.take_rebalance()
    }

    fn drop_moved(&self, batch: &mut Vec<Record>, moved: &Rebalance) {
        batch.retain(|r| {
            let tp = r.topic_partition();
            !moved.gained.contains(&tp) && !moved.lost.contains(&tp)
        });
    }

    fn lag(&mut self, stage: &'static str) -> Result<u64> {
        measure_lag(stage, self.consumer.as_mut())
    }

    /// By input topic.
    fn count(&self, stage: &'static str, batch: &[Record]) {
        let mut by_topic: BTreeMap<&str, u64> = BTreeMap::new();
        for r in batch {
            *by_topic.entry(&r.topic).or_default() += 1;
        }
        for (topic, n) in by_topic {
            metrics::counter!(EVENTS_IN, "stage" => stage, "topic" => topic.to_owned()).increment(n);
        }
    }

    fn commit(&mut self, offsets: Vec<CommittedOffset>) -> Result<()> {
        Ok(self.consumer.commit(&offsets)?)
    }

    fn commit_async(&mut self, offsets: Vec<CommittedOffset>) -> Result<()> {
        Ok(self.consumer.commit_async(&offsets)?)
    }

    /// The record's log timestamp: its produce time (the validator keeps it on its outputs).
    fn entered_ms(&self, r: &Record) -> Option<i64> {
        Some(r.timestamp_ms)
    }

    fn traceparent<'i>(&self, r: &'i mut Record) -> Option<&'i mut Vec<u8>> {
        r.headers.iter_mut().find(|(k, _)| k == cartflow_trace::TRACEPARENT).map(|(_, v)| v)
    }

    fn read_at(&self, r: &Record) -> Option<cartflow_trace::ReadAt> {
        Some(cartflow_trace::ReadAt { topic: r.topic.to_string(), partition: r.partition, offset: r.offset })
    }

    fn bytes(&self, r: &Record) -> usize {
        r.value.len() + r.key.as_ref().map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests;

//! The loop every consuming stage shares, written once (Vector's
//! `vector-stream` driver is the model): poll the inputs, hand rebalances to
//! the stage, measure lag once a second, report progress, stop on Ctrl-C or,
//! draining, once caught up, make the stage's outputs durable *before* its
//! input offsets are committed, and count what came in and how long a batch
//! took under the shared metric names. A stage brings only its own logic
//! ([`Stage`]); the validator, the lake sink and the feature streamer are
//! each a type and a call to [`drive`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cartflow_log::{CommittedOffset, Consumer, ConsumerConfig, EventLog, Rebalance, Record};

use crate::metrics::{BATCH_SECONDS, EVENTS_IN, Running, measure_lag};
use crate::{Result, StageControl};

/// A consuming stage's own logic.
pub trait Stage {
    type Stats: Clone;
    /// Its name in metrics, logs and `/status` (`validate`, `lake-sink`, `features`).
    const NAME: &'static str;

    /// Records asked of one poll.
    fn batch_size(&self) -> usize;

    /// How long a poll waits for its first record.
    fn poll_wait(&self) -> Duration {
        Duration::from_millis(200)
    }

    /// Positions the consumer and recovers the stage's state: once when the
    /// consumer has its first assignment (`moved` is `None`), and after each
    /// rebalance, with what moved.
    fn assigned(&mut self, log: &dyn EventLog, consumer: &mut dyn Consumer, moved: Option<&Rebalance>) -> Result<()>;

    /// Takes one batch of input records (in order per partition).
    fn process(&mut self, batch: Vec<Record>, consumer: &dyn Consumer) -> Result<()>;

    /// Whether what `process` took should be made durable now; `finishing`
    /// on the loop's last round.
    fn due(&self, finishing: bool) -> bool;

    /// Makes the outputs durable and returns the input offsets that are now
    /// safe to commit. The driver commits them only after this returns Ok.
    fn write(&mut self, consumer: &dyn Consumer) -> Result<Vec<CommittedOffset>>;

    /// Work of every round, after any commit (snapshots, alerts); `finishing` on the last.
    fn tick(&mut self, _finishing: bool) -> Result<()> {
        Ok(())
    }

    /// The stage's counts, with the lag just measured.
    fn stats(&mut self, lag: u64) -> &Self::Stats;
}

/// How often the lag is measured while records flow (always when idle).
const LAG_EVERY: Duration = Duration::from_secs(1);

/// Runs `stage` over `topics` as a member of `group` until `control` stops it
/// (or, draining, until it has caught up). Returns its last counts.
pub fn drive<S: Stage>(
    log: &dyn EventLog,
    group: &str,
    topics: &[&str],
    stage: &mut S,
    control: &StageControl,
    progress: &mut dyn FnMut(&S::Stats),
) -> Result<S::Stats> {
    let _running = Running::start(S::NAME);
    let mut consumer = log.consumer(ConsumerConfig::group(group, topics))?;
    stage.assigned(log, consumer.as_mut(), None)?;
    let mut lag = 0;
    let mut measured: Option<Instant> = None;
    // Time spent on what the next commit makes durable, for the batch histogram.
    let mut work = Duration::ZERO;
    loop {
        let stopped = control.stopped();
        let batch = if stopped { Vec::new() } else { consumer.poll(stage.batch_size(), stage.poll_wait())? };
        if let Some(moved) = consumer.take_rebalance() {
            tracing::info!(stage = S::NAME, gained = moved.gained.len(), lost = moved.lost.len(), "partitions moved");
            stage.assigned(log, consumer.as_mut(), Some(&moved))?;
        }
        let idle = batch.is_empty();
        if !idle {
            count_in(S::NAME, &batch);
            let started = Instant::now();
            stage.process(batch, consumer.as_ref())?;
            work += started.elapsed();
        }
        if idle || measured.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
            lag = measure_lag(S::NAME, consumer.as_mut())?;
            measured = Some(Instant::now());
            progress(stage.stats(lag));
        }
        let finishing = stopped || (idle && lag == 0 && control.draining());
        if stage.due(finishing) {
            let started = Instant::now();
            let offsets = stage.write(consumer.as_ref())?;
            // Durable outputs first, then the input offsets: a crash between the
            // two replays inputs, which the stage's recovery skips.
            consumer.commit(&offsets)?;
            work += started.elapsed();
            metrics::histogram!(BATCH_SECONDS, "stage" => S::NAME).record(work.as_secs_f64());
            work = Duration::ZERO;
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

/// Counts a batch's records by input topic (`cartflow_events_in_total`).
fn count_in(stage: &'static str, batch: &[Record]) {
    let mut by_topic: BTreeMap<&str, u64> = BTreeMap::new();
    for r in batch {
        *by_topic.entry(&r.topic).or_default() += 1;
    }
    for (topic, n) in by_topic {
        metrics::counter!(EVENTS_IN, "stage" => stage, "topic" => topic.to_owned()).increment(n);
    }
}

/// The consumer's position in every partition it holds, as offsets to commit.
pub fn positions(consumer: &dyn Consumer, metadata: &str) -> Vec<CommittedOffset> {
    consumer
        .assignment()
        .iter()
        .filter_map(|tp| {
            Some(CommittedOffset {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                offset: consumer.position(tp)?,
                metadata: metadata.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;

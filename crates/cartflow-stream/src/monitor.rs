//! The monitor: the prediction log and the validated events in, each model
//! version's online metrics out (cartflow-monitor's pure state, exported as
//! Prometheus gauges and handed to the caller). Exactly once by a snapshot:
//! the whole state is written to one file with the input positions it
//! reflects, atomically, and a restart resumes from there.
//!
//! A purchase must be read after the prediction it labels, and a session's
//! later events after its prediction too, but the two topics are read at
//! their own paces. Both are keyed by session, so with as many partitions
//! (the prediction log is made so) a session is in the same partition of
//! each, and each is in time order: a validated event newer than the newest
//! prediction read from its partition is held back until that partition's
//! predictions catch up with it, or for [`HOLD`] when none come (no
//! traffic there), then applied.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cartflow_core::time::Micros;
use cartflow_log::{CommittedOffset, EventLog, Rebalance, Record};
use cartflow_monitor::Monitor;
use cartflow_monitor::record::LoggedPrediction;
use serde::{Deserialize, Serialize};

use crate::driver::{Stage, Subscription};
use crate::supervise::{Waiting, failed, supervise};
use crate::topics::VALIDATED;
use crate::{Result, StageControl, StageError};

/// The prediction log's topic (serve writes it).
pub use cartflow_monitor::record::TOPIC as PREDICTIONS;
/// How long a validated event waits for the predictions to catch up with it.
const HOLD: Duration = Duration::from_secs(2);
/// Past this many held events, the oldest go on without waiting.
const MAX_HELD: usize = 200_000;

pub const ONLINE_METRIC: &str = "cartflow_online_metric";
pub const MONITOR_WAITING: &str = "cartflow_monitor_predictions_waiting";
pub const MONITOR_UNLABELABLE: &str = "cartflow_monitor_predictions_unlabelable";

#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub group: String,
    /// The state's file: written whole, then renamed over the last.
    pub state: PathBuf,
    /// A session without events for this long (event time) has ended.
    pub session_ttl: Micros,
    pub snapshot_every: Duration,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MonitorStats {
    pub predictions: u64,
    pub events: u64,
    pub labelled: u64,
    pub waiting: u64,
    pub unlabelable: u64,
    pub held: u64,
    pub snapshots: u64,
    pub lag: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

impl Waiting for MonitorStats {
    fn set_waiting(&mut self, why: Option<String>) {
        self.waiting_for = why;
    }
}

/// What the state file holds.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    monitor: Monitor,
    /// The newest prediction read per partition, µs.
    newest_prediction: BTreeMap<u32, Micros>,
    /// The next record to apply, per input partition.
    positions: Vec<CommittedOffset>,
}

/// Runs the monitor until `control` stops it (or, draining, until caught
/// up); `report` sees the state after each snapshot (the figures to publish).
pub fn run_monitor(
    log: &dyn EventLog,
    cfg: &MonitorConfig,
    control: &StageControl,
    report: &mut dyn FnMut(&mut Monitor),
    progress: &mut dyn FnMut(&MonitorStats),
) -> Result<MonitorStats> {
    log.ensure_topic(PREDICTIONS, 0)?;
    let partitions = |topic| log.topic(topic).map(|t| t.map(|t| t.partitions.len()));
    let aligned = partitions(PREDICTIONS)? == partitions(VALIDATED)?;
    if !aligned {
        tracing::warn!(
            "{PREDICTIONS} and {VALIDATED} have different partition counts: events wait for every partition's predictions"
        );
    }
    supervise(MonitorStage::NAME, control, progress, |stats, progress| {
        let mut stage = MonitorStage {
            cfg,
            monitor: Monitor::new(cfg.session_ttl),
            held: BTreeMap::new(),
            newest_prediction: BTreeMap::new(),
            aligned,
            read_upto: BTreeMap::new(),
            last_snapshot: Instant::now(),
            report: &mut *report,
            stats,
        };
        let mut input = Subscription::join(log, &cfg.group, &[PREDICTIONS, VALIDATED])
            .map_err(|e| failed(e, stage.stats.clone()))?;
        crate::driver::drive(&mut input, &mut stage, control, progress).map_err(|e| failed(e, stage.stats.clone()))
    })
}

struct Held {
    offset: u64,
    since: Instant,
    event: cartflow_core::Event,
}

struct MonitorStage<'a> {
    cfg: &'a MonitorConfig,
    monitor: Monitor,
    /// Per partition, the events waiting for its predictions, in order.
    held: BTreeMap<u32, VecDeque<Held>>,
    newest_prediction: BTreeMap<u32, Micros>,
    /// Per validated partition, the newest event read and when: partitions
    /// read apart in event time, and one behind may still bring a session's
    /// next event (one read nothing for [`HOLD`] is idle and holds nothing).
    read_upto: BTreeMap<u32, (Micros, Instant)>,
    /// Whether both topics have as many partitions (a session's events and
    /// predictions in the same one); if not, events wait for every partition's predictions.
    aligned: bool,
    last_snapshot: Instant,
    report: &'a mut dyn FnMut(&mut Monitor),
    stats: MonitorStats,
}

impl MonitorStage<'_> {
    fn load(&self) -> Result<Option<Snapshot>> {
        match std::fs::read(&self.cfg.state) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                StageError::Config(format!(
                    "{}: not a monitor state ({e}); move it away to start over",
                    self.cfg.state.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&self.cfg.state, e)),
        }
    }

    fn save(&self, positions: Vec<CommittedOffset>) -> Result<()> {
        let path = &self.cfg.state;
        let snapshot =
            Snapshot { monitor: self.monitor.clone(), newest_prediction: self.newest_prediction.clone(), positions };
        let json = serde_json::to_vec(&snapshot)
            .map_err(|e| StageError::Config(format!("encoding the monitor's state: {e}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| io(path, e))
    }

    /// Applies the held events that may go now, oldest first across
    /// partitions (the time the labels reach is the newest event applied).
    fn release(&mut self, all: bool) {
        let crowded = self.held.values().map(VecDeque::len).sum::<usize>() > MAX_HELD;
        let everywhere = self.newest_prediction.values().copied().max().unwrap_or(Micros::MIN);
        loop {
            let next = self
                .held
                .iter()
                .filter_map(|(partition, held)| {
                    let h = held.front()?;
                    let newest =
                        if self.aligned { self.newest_prediction.get(partition).copied() } else { Some(everywhere) };
                    let go = all
                        || crowded
                        || h.event.event_time <= newest.unwrap_or(Micros::MIN)
                        || h.since.elapsed() >= HOLD;
                    go.then_some((h.event.event_time, *partition))
                })
                .min();
            let Some((_, partition)) = next else { break };
            let h = self.held.get_mut(&partition).and_then(VecDeque::pop_front).expect("front");
            self.monitor.event(&h.event);
        }
        // A session may still have an event as old as the oldest held one, or
        // as the newest read from a partition still being read: none ends before.
        let oldest_held = self.held.values().filter_map(|h| h.front()).map(|h| h.event.event_time).min();
        let slowest = self.read_upto.values().filter(|(_, at)| at.elapsed() < HOLD).map(|(t, _)| *t).min();
        let until = if all { Micros::MAX } else { oldest_held.into_iter().chain(slowest).min().unwrap_or(Micros::MAX) };
        self.monitor.expire(until);
    }

    fn publish(&mut self) {
        (self.report)(&mut self.monitor);
        for r in self.monitor.reports() {
            let f = &r.figures;
            let figures = [
                ("labelled", f.labelled as f64),
                ("positives", f.positives as f64),
                ("base_rate", f.base_rate),
                ("mean_probability", f.mean_probability),
                ("roc_auc", f.roc_auc),
                ("pr_auc", f.pr_auc),
                ("log_loss", f.log_loss),
                ("brier", f.brier),
                ("precision", f.precision),
                ("recall", f.recall),
            ];
            for (metric, value) in figures {
                metrics::gauge!(ONLINE_METRIC, "model" => r.model.name.clone(), "version" => r.model.version.clone(),
                    "window" => r.window, "metric" => metric)
                .set(value);
            }
        }
        metrics::gauge!(MONITOR_WAITING).set(self.monitor.waiting() as f64);
        metrics::gauge!(MONITOR_UNLABELABLE).set(self.monitor.unlabelable() as f64);
    }
}

fn io(path: &std::path::Path, e: std::io::Error) -> StageError {
    let message = format!("{}: {e}", path.display());
    if e.kind() == std::io::ErrorKind::StorageFull {
        StageError::Unavailable(message)
    } else {
        StageError::Config(message)
    }
}

impl<'a> Stage for MonitorStage<'a> {
    type Input = Subscription<'a>;
    type Stats = MonitorStats;
    const NAME: &'static str = "monitor";

    fn batch_size(&self) -> usize {
        4096
    }

    /// Resumes from the state file's positions (the beginning without one).
    fn assigned(&mut self, input: &mut Subscription<'a>, moved: Option<&Rebalance>) -> Result<()> {
        if let Some(change) = moved {
            return crate::one_member_only(Self::NAME, &self.cfg.group, change);
        }
        let positions: BTreeMap<(String, u32), u64> = match self.load()? {
            Some(snapshot) => {
                self.monitor = snapshot.monitor;
                self.newest_prediction = snapshot.newest_prediction;
                snapshot.positions.into_iter().map(|o| ((o.topic, o.partition), o.offset)).collect()
            }
            None => BTreeMap::new(),
        };
        for tp in input.consumer.assignment() {
            let at = positions.get(&(tp.topic.to_string(), tp.partition)).copied().unwrap_or(0);
            input.consumer.seek(&tp, at)?;
        }
        self.held.clear();
        Ok(())
    }

    fn process(&mut self, batch: Vec<Record>, _: &Subscription<'a>) -> Result<()> {
        let now = Instant::now();
        for r in batch {
            if &*r.topic == PREDICTIONS {
                self.stats.predictions += 1;
                match serde_json::from_slice::<LoggedPrediction>(&r.value) {
                    Ok(p) => {
                        let newest = self.newest_prediction.entry(r.partition).or_insert(Micros::MIN);
                        *newest = (*newest).max(p.event_time);
                        self.monitor.predicted(&p);
                    }
                    Err(e) => tracing::warn!(partition = r.partition, offset = r.offset, "unreadable prediction: {e}"),
                }
            } else if !r.value.is_empty() {
                self.stats.events += 1;
                match cartflow_core::Event::from_json(&r.value) {
                    Ok(event) => {
                        let upto = self.read_upto.entry(r.partition).or_insert((Micros::MIN, now));
                        *upto = (upto.0.max(event.event_time), now);
                        self.held.entry(r.partition).or_default().push_back(Held {
                            offset: r.offset,
                            since: now,
                            event,
                        })
                    }
                    Err(e) => tracing::warn!(partition = r.partition, offset = r.offset, "unreadable event: {e}"),
                }
            }
        }
        self.release(false);
        Ok(())
    }

    fn due(&self, finishing: bool) -> bool {
        finishing || self.last_snapshot.elapsed() >= self.cfg.snapshot_every
    }

    /// The state and the positions it reflects, in one file: a held event's
    /// partition resumes at it.
    fn write(&mut self, input: &Subscription<'a>) -> Result<Vec<CommittedOffset>> {
        let mut positions = input.positions(Self::NAME);
        for p in positions.iter_mut().filter(|p| p.topic == VALIDATED) {
            if let Some(h) = self.held.get(&p.partition).and_then(VecDeque::front) {
                p.offset = h.offset;
            }
        }
        self.save(positions.clone())?;
        self.stats.snapshots += 1;
        self.last_snapshot = Instant::now();
        self.publish();
        Ok(positions)
    }

    /// On the last round, every held event is applied for the figures the
    /// run ends with; the state written keeps them held, to be read again.
    fn tick(&mut self, finishing: bool) -> Result<()> {
        self.release(finishing);
        if finishing {
            self.publish();
        }
        Ok(())
    }

    fn stats(&mut self, lag: u64) -> &MonitorStats {
        let s = &mut self.stats;
        s.lag = lag;
        s.labelled = self.monitor.labelled();
        s.waiting = self.monitor.waiting() as u64;
        s.unlabelable = self.monitor.unlabelable();
        s.held = self.held.values().map(VecDeque::len).sum::<usize>() as u64;
        &self.stats
    }

    fn outputs(&self) -> u64 {
        self.monitor.labelled()
    }
}

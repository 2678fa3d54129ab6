//! The feature streamer: `validated` → the online store. Each batch of
//! records is applied together with the input position after it (the
//! store's promise: a crash replays nothing the store already holds), and
//! the streamer resumes from the store's offsets, not the group's. Any
//! number of streamers in one group share a Redis store, each writing the
//! partitions it holds. Group offsets are still committed so `cartflow
//! topics` shows the lag.

use std::time::{Duration, Instant};

use cartflow_core::Event;
use cartflow_log::{CommittedOffset, EventLog, Rebalance, Record};
use cartflow_online::{Change, OnlineStore};
use serde::{Deserialize, Serialize};

use crate::driver::{Stage, Subscription};
use crate::metrics::EVENTS_OUT;
use crate::supervise::{Waiting, failed, supervise};
use crate::topics::{CHANGE_OP, VALIDATED};
use crate::{Result, StageControl, StageError};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamerConfig {
    pub group: String,
    /// Records per batch: one store write (and, for Redis, one MULTI) each.
    pub batch: usize,
    /// Seconds between snapshots of the embedded store.
    pub snapshot_secs: u64,
}

impl Default for StreamerConfig {
    fn default() -> Self {
        StreamerConfig { group: "cartflow-features".into(), batch: 4_096, snapshot_secs: 30 }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamerStats {
    pub read: u64,
    pub counted: u64,
    pub duplicates: u64,
    pub deletes: u64,
    pub unknown_deletes: u64,
    /// Validated records that did not parse (never expected; logged).
    pub unreadable: u64,
    pub expired_sessions: u64,
    pub snapshots: u64,
    pub lag: u64,
    /// Set while the stage waits for a backing service to come back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

impl Waiting for StreamerStats {
    fn set_waiting(&mut self, why: Option<String>) {
        self.waiting = why;
    }
}

pub const STREAMER_DUPLICATES: &str = "cartflow_feature_duplicates_total";
pub const STREAMER_EXPIRED: &str = "cartflow_feature_sessions_expired_total";

pub fn run_feature_streamer(
    log: &dyn EventLog,
    store: &dyn OnlineStore,
    cfg: &StreamerConfig,
    control: &StageControl,
    progress: &mut dyn FnMut(&StreamerStats),
) -> Result<StreamerStats> {
    // At zero from the start, so `rate` sees the first duplicate or expiry.
    metrics::counter!(STREAMER_DUPLICATES).increment(0);
    metrics::counter!(STREAMER_EXPIRED).increment(0);
    supervise(Streamer::NAME, control, progress, |stats, progress| {
        let mut stage = Streamer { store, cfg, changes: Vec::new(), last_snapshot: Instant::now(), stats };
        let mut input =
            Subscription::join(log, &cfg.group, &[VALIDATED]).map_err(|e| failed(e, stage.stats.clone()))?;
        crate::driver::drive(&mut input, &mut stage, control, progress).map_err(|e| failed(e, stage.stats.clone()))
    })
}

/// The feature streamer as a stage: each batch applied to the store with the
/// position after it, in one write.
struct Streamer<'a> {
    store: &'a dyn OnlineStore,
    cfg: &'a StreamerConfig,
    /// The batch taken, not yet applied.
    changes: Vec<Change>,
    last_snapshot: Instant,
    stats: StreamerStats,
}

fn online(e: cartflow_online::OnlineError) -> StageError {
    match e {
        cartflow_online::OnlineError::Taken { .. } => StageError::Group(format!("online store: {e}")),
        e if e.is_transient() => StageError::Unavailable(format!("online store: {e}")),
        e => StageError::Config(format!("online store: {e}")),
    }
}

impl<'a> Stage for Streamer<'a> {
    type Input = Subscription<'a>;
    type Stats = StreamerStats;
    const NAME: &'static str = "features";

    fn batch_size(&self) -> usize {
        self.cfg.batch
    }

    /// Resumes from the store's offsets, not the group's. A store many
    /// streamers share (Redis) takes partitions moving between them: those
    /// gained resume where the store says, and what this process kept of
    /// those that moved is read again. An embedded store has one writer.
    fn assigned(&mut self, input: &mut Subscription<'a>, moved: Option<&Rebalance>) -> Result<()> {
        let gained = match moved {
            None => input.consumer.assignment(),
            Some(change) if !self.store.shared() => return crate::one_member_only(Self::NAME, &self.cfg.group, change),
            Some(change) => {
                let partitions: Vec<u32> = change.gained.iter().chain(&change.lost).map(|tp| tp.partition).collect();
                self.store.forget(&partitions);
                change.gained.clone()
            }
        };
        let stored = self.store.offsets().map_err(online)?;
        for tp in gained {
            let at =
                stored.iter().find(|o| *o.topic == *tp.topic && o.partition == tp.partition).map_or(0, |o| o.offset);
            input.consumer.seek(&tp, at)?;
        }
        Ok(())
    }

    fn process(&mut self, batch: Vec<Record>, _: &Subscription<'a>) -> Result<()> {
        self.stats.read += batch.len() as u64;
        self.changes = to_changes(&batch, &mut self.stats);
        Ok(())
    }

    fn due(&self, _: bool) -> bool {
        !self.changes.is_empty()
    }

    /// The store takes the batch and the position after it at once.
    fn write(&mut self, input: &Subscription<'a>) -> Result<Vec<CommittedOffset>> {
        let offsets = input.positions(Self::NAME);
        let applied = self.store.apply(&std::mem::take(&mut self.changes), &offsets).map_err(online)?;
        let s = &mut self.stats;
        s.counted += applied.counted;
        s.duplicates += applied.duplicates;
        s.unknown_deletes += applied.unknown_deletes;
        metrics::counter!(EVENTS_OUT, "stage" => Self::NAME, "topic" => "online-store").increment(applied.counted);
        metrics::counter!(STREAMER_DUPLICATES).increment(applied.duplicates);
        Ok(offsets)
    }

    /// Sessions past their TTL go, and the embedded store snapshots, every
    /// `snapshot_secs` (written to disk while the streamer reads on) and at
    /// the end (durable before the streamer returns).
    fn tick(&mut self, finishing: bool) -> Result<()> {
        if finishing || self.last_snapshot.elapsed() >= Duration::from_secs(self.cfg.snapshot_secs) {
            let expired = self.store.expire().map_err(online)? as u64;
            self.stats.expired_sessions += expired;
            metrics::counter!(STREAMER_EXPIRED).increment(expired);
            if finishing {
                self.store.checkpoint().map_err(online)?;
            } else {
                self.store.checkpoint_in_background().map_err(online)?;
            }
            self.stats.snapshots += 1;
            self.last_snapshot = Instant::now();
        }
        Ok(())
    }

    fn stats(&mut self, lag: u64) -> &StreamerStats {
        self.stats.lag = lag;
        &self.stats
    }

    fn outputs(&self) -> u64 {
        self.stats.counted + self.stats.deletes
    }
}

/// Records as changes: CDC deletes (`op` d) take their event back.
fn to_changes(batch: &[Record], stats: &mut StreamerStats) -> Vec<Change> {
    let mut changes = Vec::with_capacity(batch.len());
    for r in batch {
        match Event::from_json(&r.value) {
            Ok(event) => {
                let delete = r.header_str(CHANGE_OP) == Some("d");
                stats.deletes += u64::from(delete);
                changes.push(Change { event, delete, partition: r.partition, offset: r.offset });
            }
            Err(e) => {
                // The validator wrote it; the lake sink keeps it as invalid for inspection.
                stats.unreadable += 1;
                tracing::error!(partition = r.partition, offset = r.offset, "unreadable validated record: {e}");
            }
        }
    }
    changes
}

//! The feature streamer: `validated` → the online store. Each batch of
//! records is applied together with the input position after it, atomically
//! (the store's promise), and the streamer resumes from the store's offsets,
//! not the group's: a crash replays nothing the store already holds.
//! Group offsets are still committed so `cartflow topics` shows the lag.

use std::time::{Duration, Instant};

use cartflow_core::Event;
use cartflow_log::{CommittedOffset, ConsumerConfig, EventLog, Record};
use cartflow_online::{Change, OnlineStore};
use serde::{Deserialize, Serialize};

use crate::metrics::{BATCH_SECONDS, EVENTS_IN, EVENTS_OUT, measure_lag};
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
    let _running = crate::metrics::Running::start("features");
    let online = |e: cartflow_online::OnlineError| StageError::Config(format!("online store: {e}"));
    let mut stats = StreamerStats::default();
    let mut consumer = log.consumer(ConsumerConfig::group(&cfg.group, &[VALIDATED]))?;
    let stored = store.offsets().map_err(online)?;
    for tp in consumer.assignment() {
        let at = stored.iter().find(|o| *o.topic == *tp.topic && o.partition == tp.partition).map_or(0, |o| o.offset);
        consumer.seek(&tp, at)?;
    }
    let mut last_snapshot = Instant::now();
    let mut checked_lag = Instant::now() - Duration::from_secs(1);
    loop {
        let stopped = control.stopped();
        let batch = if stopped { Vec::new() } else { consumer.poll(cfg.batch, Duration::from_millis(200))? };
        if let Some(change) = consumer.take_rebalance() {
            crate::one_member_only("features", &cfg.group, &change)?;
        }
        let idle = batch.is_empty();
        if !idle {
            let started = Instant::now();
            stats.read += batch.len() as u64;
            metrics::counter!(EVENTS_IN, "stage" => "features", "topic" => VALIDATED).increment(batch.len() as u64);
            let changes = to_changes(&batch, &mut stats);
            let offsets: Vec<CommittedOffset> = consumer
                .assignment()
                .into_iter()
                .filter_map(|tp| {
                    let offset = consumer.position(&tp)?;
                    Some(CommittedOffset {
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                        offset,
                        metadata: "features".into(),
                    })
                })
                .collect();
            let applied = store.apply(&changes, &offsets).map_err(online)?;
            consumer.commit(&offsets)?;
            stats.counted += applied.counted;
            stats.duplicates += applied.duplicates;
            stats.unknown_deletes += applied.unknown_deletes;
            metrics::counter!(EVENTS_OUT, "stage" => "features", "topic" => "online-store").increment(applied.counted);
            metrics::counter!(STREAMER_DUPLICATES).increment(applied.duplicates);
            metrics::histogram!(BATCH_SECONDS, "stage" => "features").record(started.elapsed().as_secs_f64());
        }
        let due = last_snapshot.elapsed() >= Duration::from_secs(cfg.snapshot_secs);
        if idle || checked_lag.elapsed() >= Duration::from_secs(1) {
            stats.lag = measure_lag("features", consumer.as_mut())?;
            checked_lag = Instant::now();
            progress(&stats);
        }
        let finishing = stopped || (idle && stats.lag == 0 && control.draining());
        if due || finishing {
            let expired = store.expire().map_err(online)? as u64;
            stats.expired_sessions += expired;
            metrics::counter!(STREAMER_EXPIRED).increment(expired);
            store.checkpoint().map_err(online)?;
            stats.snapshots += 1;
            last_snapshot = Instant::now();
        }
        if finishing {
            progress(&stats);
            break;
        }
    }
    Ok(stats)
}

/// Records as changes: CDC deletes (`op` d) take their event back.
fn to_changes(batch: &[Record], stats: &mut StreamerStats) -> Vec<Change> {
    let mut changes = Vec::with_capacity(batch.len());
    for r in batch {
        match Event::from_json(&r.value) {
            Ok(event) => {
                let delete = r.header_str(CHANGE_OP) == Some("d");
                stats.deletes += u64::from(delete);
                changes.push(Change { event, delete });
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

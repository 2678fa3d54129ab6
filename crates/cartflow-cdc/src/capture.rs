//! `cartflow cdc`: a PostgreSQL table → `tracking_postgres_cdc.<schema>.<table>`
//! in Debezium's envelope. An initial snapshot (Debezium's `initial` mode),
//! then the changes of a logical replication slot (pgoutput), read through
//! SQL, as a stage of the one driver ([`cartflow_stream::driver::drive`]):
//! the slot's position is confirmed only after the records are durable in
//! the log, and each record's position header lets a restart skip what the
//! log already holds: nothing lost, nothing repeated.

use std::collections::HashMap;

use cartflow_log::{EventLog, Producer, ProducerRecord, Rebalance, TopicPartition, read_range};
use cartflow_stream::StageControl;
use cartflow_stream::driver::{Stage, drive};
use cartflow_stream::metrics::EVENTS_OUT;
use cartflow_stream::supervise::{Waiting, failed, supervise};
use cartflow_trace::{RecordSampler, TRACEPARENT};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::debezium::{Source, envelope, key_json, row_json};
use crate::pgoutput::{self, Message, Relation, Tuple, Value};
use crate::position::{self, Cut, HEADER, Position, Resume, format_lsn};
use crate::slot::{Change, Slot, SlotInput, ensure_publication, mark_ours};
use crate::table::{Table, connect, describe, pg};
use crate::{CdcError, Result};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdcConfig {
    /// `postgres://user@host:port/db`.
    pub postgres: String,
    /// `schema.table`; it needs a one-column integer primary key.
    pub table: String,
    pub slot: String,
    pub publication: String,
    /// Debezium's logical server name: the topic is `<name>.<schema>.<table>`.
    pub server_name: String,
    /// Changes asked of the slot (and rows of a snapshot page) per round.
    pub batch: usize,
    /// Wait between rounds that found nothing.
    pub poll_ms: u64,
}

impl Default for CdcConfig {
    fn default() -> Self {
        CdcConfig {
            postgres: String::new(),
            table: "public.events".into(),
            slot: "cartflow_cdc".into(),
            publication: "cartflow_cdc".into(),
            server_name: "tracking_postgres_cdc".into(),
            batch: 10_000,
            poll_ms: 200,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CdcStats {
    pub snapshot_rows: u64,
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    /// Changes a restart found already in the log, or already in the snapshot.
    pub skipped: u64,
    /// The slot's confirmed position.
    pub confirmed_lsn: String,
    /// Changes the last read took that were not yet confirmed.
    pub lag: u64,
    /// Set while the capture waits for PostgreSQL or the log to come back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

impl Waiting for CdcStats {
    fn set_waiting(&mut self, why: Option<String>) {
        self.waiting = why;
    }
}

impl CdcStats {
    pub fn records(&self) -> u64 {
        self.snapshot_rows + self.inserts + self.updates + self.deletes
    }
}

fn now_ms() -> i64 {
    cartflow_core::time::now_micros() / 1000
}

/// Captures `cfg.table` into the log until `control` stops it (or, draining,
/// until the slot has nothing more). Blocks; PostgreSQL is called through `runtime`.
pub fn run_cdc(
    runtime: &Handle,
    log: &dyn EventLog,
    cfg: &CdcConfig,
    control: &StageControl,
    progress: &mut dyn FnMut(&CdcStats),
) -> Result<CdcStats> {
    let mut stopped_in_pass = false;
    // A PostgreSQL restart ends the session and the slot's read: the capture
    // opens again from the log's last record, as after a kill.
    let stats = supervise(Capture::NAME, control, progress, |stats, progress| {
        let (mut input, mut stage) =
            runtime.block_on(open(runtime, log, cfg, stats.clone())).map_err(|e| failed(e, stats))?;
        let done = drive(&mut input, &mut stage, control, progress).map_err(|e| failed(e, stage.stats.clone()))?;
        stopped_in_pass = input.in_pass();
        Ok(done)
    })?;
    if stopped_in_pass {
        // Stopped during the snapshot (draining never ends there: a pass always reaches its end).
        return Err(CdcError::Stopped);
    }
    Ok(stats)
}

/// Checks the table, takes the slot, and decides from the topic's last record
/// where to resume: a new slot and a whole snapshot, the rest of a pass cut
/// short, or the slot's changes after the last one written.
async fn open(runtime: &Handle, log: &dyn EventLog, cfg: &CdcConfig, counts: CdcStats) -> Result<(SlotInput, Capture)> {
    let client = connect(&cfg.postgres).await?;
    let table = describe(&client, &cfg.table).await?;
    let topic = format!("{}.{}.{}", cfg.server_name, table.schema, table.name);
    log.ensure_topic(&topic, cartflow_stream::topics::CDC_PARTITIONS)?;
    ensure_publication(&client, cfg).await?;
    Slot::lock(&client, cfg, &table.db).await?;
    let slot = Slot::find(&client, cfg, &table.db).await?;
    let mut resume = position::resume(last_position(log, &topic)?);
    if resume == Resume::Fresh {
        if let Some(slot) = &slot {
            // A slot this capture made at a start that wrote nothing: its snapshot never landed.
            slot.drop_if_ours(&client, cfg, &topic).await?;
        }
        client
            .execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&cfg.slot])
            .await
            .map_err(pg("creating the replication slot"))?;
        mark_ours(&client, cfg).await?;
        tracing::info!(slot = cfg.slot, "created the replication slot; taking the initial snapshot");
        resume = Resume::Snapshot { after_pk: i64::MIN, cuts: Vec::new() };
    } else if slot.is_none() {
        return Err(CdcError::Table(format!(
            "{topic} has records but the slot {:?} is gone, so changes since then are lost: \
             start over with an empty topic, or restore the slot",
            cfg.slot
        )));
    }
    let mut input = SlotInput::open(runtime.clone(), client, cfg).await?;
    let (after, cuts) = match resume {
        Resume::Snapshot { after_pk, cuts } => {
            input.start_pass(cfg, &table, after_pk).await?;
            (None, cuts)
        }
        Resume::Stream { after, cuts } => (after, cuts),
        Resume::Fresh => unreachable!("a fresh start takes a snapshot"),
    };
    // Where the slot stands before this run confirms anything (a drain with
    // no changes confirms nothing, and should still say where the slot is).
    let stats = CdcStats { confirmed_lsn: input.confirmed().await?, ..counts };
    let writer = Writer {
        producer: log.producer()?,
        topic,
        table,
        server_name: cfg.server_name.clone(),
        sampler: RecordSampler::configured(),
    };
    let capture = Capture {
        writer,
        batch: cfg.batch,
        poll_ms: cfg.poll_ms,
        held: None,
        relations: HashMap::new(),
        txn: Txn::default(),
        after,
        cuts,
        confirm: None,
        written: 0,
        stats,
    };
    Ok((input, capture))
}

/// The capture as a stage: snapshot rows and slot changes into records,
/// flushed, then the slot advanced past them.
struct Capture {
    writer: Writer,
    batch: usize,
    poll_ms: u64,
    /// The pass's last row read, written once the next shows whether it is
    /// the very last (Debezium's `snapshot: last`).
    held: Option<(i64, Tuple, u64)>,
    relations: HashMap<u32, Relation>,
    txn: Txn,
    /// The last change the log held at start: changes at or before it are skipped.
    after: Option<(u64, u32)>,
    /// Which keys the snapshot read at which LSN.
    cuts: Vec<Cut>,
    /// The end of the last transaction taken, not yet confirmed.
    confirm: Option<u64>,
    /// Records sent since the last write.
    written: u64,
    stats: CdcStats,
}

impl Stage for Capture {
    type Input = SlotInput;
    type Stats = CdcStats;
    const NAME: &'static str = "cdc";

    fn batch_size(&self) -> usize {
        self.batch
    }

    fn poll_wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.poll_ms)
    }

    /// The slot and the pass were positioned when the capture opened; a slot never rebalances.
    fn assigned(&mut self, _: &mut SlotInput, _: Option<&Rebalance>) -> cartflow_stream::Result<()> {
        Ok(())
    }

    fn process(&mut self, batch: Vec<Change>, _: &SlotInput) -> cartflow_stream::Result<()> {
        let before = self.stats.records();
        for item in batch {
            match item {
                Change::Row { pk, tuple, lsn } => {
                    if let Some((pk, tuple, lsn)) = self.held.replace((pk, tuple, lsn)) {
                        write_snapshot_row(&mut self.writer, pk, &tuple, lsn, &self.cuts, false)?;
                        self.stats.snapshot_rows += 1;
                    }
                }
                Change::SnapshotEnd { lsn } => {
                    if let Some((pk, tuple, lsn)) = self.held.take() {
                        write_snapshot_row(&mut self.writer, pk, &tuple, lsn, &self.cuts, true)?;
                        self.stats.snapshot_rows += 1;
                    }
                    self.cuts = position::finish(std::mem::take(&mut self.cuts), lsn);
                }
                Change::Wal(data) => self.decoded(pgoutput::decode(&data).map_err(CdcError::from)?)?,
            }
        }
        self.written += self.stats.records() - before;
        Ok(())
    }

    /// Every batch is flushed and confirmed before the next is read: a peek
    /// reads from the confirmed position, so an unconfirmed batch would come again.
    fn due(&self, _: bool) -> bool {
        self.written > 0 || self.confirm.is_some()
    }

    /// Durable in the log first, then the slot may forget them.
    fn write(&mut self, _: &SlotInput) -> cartflow_stream::Result<Option<u64>> {
        self.writer.producer.flush()?;
        self.writer.sampler.flushed();
        let w = &self.writer;
        metrics::counter!(EVENTS_OUT, "stage" => Self::NAME, "topic" => w.topic.clone()).increment(self.written);
        self.written = 0;
        let confirm = self.confirm.take();
        if let Some(lsn) = confirm {
            self.stats.confirmed_lsn = format_lsn(lsn);
        }
        Ok(confirm)
    }

    fn stats(&mut self, lag: u64) -> &CdcStats {
        self.stats.lag = lag;
        &self.stats
    }

    fn outputs(&self) -> u64 {
        self.stats.snapshot_rows + self.stats.inserts + self.stats.updates + self.stats.deletes
    }
}

impl Capture {
    /// One pgoutput message of the slot.
    fn decoded(&mut self, message: Message) -> Result<()> {
        let (w, rels, txn, after, cuts, stats) =
            (&mut self.writer, &self.relations, &mut self.txn, &self.after, &self.cuts, &mut self.stats);
        match message {
            Message::Begin { final_lsn, commit_ts_us, xid } => {
                *txn = Txn { commit: final_lsn, xid, ts_ms: commit_ts_us / 1000, changes: 0 };
                self.cuts = position::still_needed(std::mem::take(&mut self.cuts), final_lsn);
            }
            Message::Commit { end_lsn, .. } => self.confirm = Some(end_lsn),
            Message::Relation(r) => {
                self.relations.insert(r.id, r);
            }
            Message::Insert { relation, new } => {
                change(w, rels, relation, txn, after, cuts, stats, "c", None, Some(new))?
            }
            Message::Update { relation, old, new } => {
                change(w, rels, relation, txn, after, cuts, stats, "u", old, Some(new))?
            }
            Message::Delete { relation, old } => {
                change(w, rels, relation, txn, after, cuts, stats, "d", Some(old), None)?
            }
            Message::Other(_) => {}
        }
        Ok(())
    }
}

/// The position in the last record of the CDC topic.
fn last_position(log: &dyn EventLog, topic: &str) -> Result<Option<Position>> {
    let Some(info) = log.topic(topic)? else { return Ok(None) };
    if info.partitions.len() != 1 {
        let records = info.records();
        return Err(CdcError::Table(format!(
            "topic {topic} has {} partitions ({records} records): change capture keeps one, in commit order. \
             A stage of an older cartflow made it when it subscribed first; delete it with \
             `cartflow topics delete {topic}` (add --force if its records may go) and start the capture again",
            info.partitions.len()
        )));
    }
    let p = &info.partitions[0];
    if p.end <= p.start {
        return Ok(None);
    }
    let last = read_range(log, &TopicPartition::new(topic, 0), p.end - 1, p.end)?;
    let Some(r) = last.last() else { return Ok(None) };
    let header = r
        .header_str(HEADER)
        .ok_or_else(|| CdcError::Table(format!("the last record of {topic} has no {HEADER} header: not cartflow's")))?;
    Ok(Some(serde_json::from_str(header).map_err(|e| CdcError::Table(format!("{HEADER} of {topic}: {e}")))?))
}

/// Writes the CDC topic's records in Debezium's envelope.
struct Writer {
    producer: Box<dyn Producer>,
    topic: String,
    table: Table,
    server_name: String,
    /// Picks the changes traced from here through every stage.
    sampler: RecordSampler,
}

impl Writer {
    fn source(&self, snapshot: &'static str, ts_ms: i64, tx_id: Option<u32>, lsn: Option<u64>) -> Source<'_> {
        Source {
            version: concat!("cartflow-", env!("CARGO_PKG_VERSION")),
            connector: "postgresql",
            name: &self.server_name,
            ts_ms,
            snapshot,
            db: &self.table.db,
            schema: &self.table.schema,
            table: &self.table.name,
            tx_id,
            lsn,
        }
    }

    fn send(&mut self, key: &[u8], value: &[u8], pos: &Position) -> Result<()> {
        let pos = serde_json::to_string(pos).expect("serializes");
        let traceparent = self.sampler.root("cdc");
        let headers: &[(&str, &[u8])] =
            &[(HEADER, pos.as_bytes()), (TRACEPARENT, traceparent.as_deref().unwrap_or_default().as_bytes())];
        let headers = if traceparent.is_some() { headers } else { &headers[..1] };
        self.producer.send(ProducerRecord::new(&self.topic, Some(key), value).headers(headers))?;
        Ok(())
    }
}

fn write_snapshot_row(w: &mut Writer, pk: i64, tuple: &Tuple, lsn: u64, cuts: &[Cut], last: bool) -> Result<()> {
    let cols = &w.table.columns;
    let after = row_json(cols, tuple);
    let source = w.source(if last { "last" } else { "true" }, now_ms(), None, Some(lsn));
    let value = envelope("r", None, Some(&after), &source, now_ms());
    let key = key_json(&cols[w.table.pk], &tuple[w.table.pk]);
    w.send(&key, &value, &Position::Snapshot { pk, lsn, cuts: cuts.to_vec(), last })
}

/// The transaction being decoded.
#[derive(Default)]
struct Txn {
    commit: u64,
    xid: u32,
    ts_ms: i64,
    /// Changes of this transaction so far (each takes two positions: the change and its tombstone).
    changes: u32,
}

#[allow(clippy::too_many_arguments)]
fn change(
    w: &mut Writer,
    relations: &HashMap<u32, Relation>,
    relation: u32,
    txn: &mut Txn,
    after: &Option<(u64, u32)>,
    cuts: &[Cut],
    stats: &mut CdcStats,
    op: &str,
    old: Option<Tuple>,
    new: Option<Tuple>,
) -> Result<()> {
    let rel = relations
        .get(&relation)
        .ok_or_else(|| CdcError::Postgres(format!("a change to relation {relation} came before its description")))?;
    let index = txn.changes * 2;
    txn.changes += 1;
    let keyed = new.as_ref().or(old.as_ref()).expect("a change has a row");
    let pk = match &keyed[w.table.pk] {
        Value::Text(t) => t.parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| CdcError::Postgres("a change without its primary key".into()))?;
    let done = |i: u32| after.is_some_and(|a| (txn.commit, i) <= a);
    if done(index) && (op != "d" || done(index + 1)) || position::in_snapshot(cuts, pk, txn.commit) {
        stats.skipped += 1;
        return Ok(());
    }
    let key = key_json(&w.table.columns[w.table.pk], &keyed[w.table.pk]);
    let pos = |index| Position::Stream { commit: txn.commit, index, cuts: cuts.to_vec() };
    if !done(index) {
        let before = old.as_ref().map(|t| row_json(&rel.columns, t));
        let after_row = new.as_ref().map(|t| row_json(&rel.columns, t));
        let source = w.source("false", txn.ts_ms, Some(txn.xid), Some(txn.commit));
        let value = envelope(op, before.as_ref(), after_row.as_ref(), &source, now_ms());
        w.send(&key, &value, &pos(index))?;
        match op {
            "c" => stats.inserts += 1,
            "u" => stats.updates += 1,
            _ => stats.deletes += 1,
        }
    }
    if op == "d" {
        // Debezium's tombstone, so a compacted topic can drop the key.
        w.send(&key, b"", &pos(index + 1))?;
    }
    Ok(())
}

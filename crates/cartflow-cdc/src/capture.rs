//! `cartflow cdc`: a PostgreSQL table → `tracking_postgres_cdc.<schema>.<table>`
//! in Debezium's envelope. An initial snapshot (Debezium's `initial` mode),
//! then the changes of a logical replication slot (pgoutput), read through
//! SQL. The slot's position is confirmed only after the records are durable
//! in the log, and each record's position header lets a restart skip what
//! the log already holds: nothing lost, nothing repeated.

use std::collections::HashMap;
use std::time::Duration;

use cartflow_log::{EventLog, Producer, ProducerRecord, TopicPartition, read_range};
use cartflow_stream::StageControl;
use cartflow_stream::metrics::EVENTS_OUT;
use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, NoTls};

use crate::debezium::{Source, envelope, key_json, row_json};
use crate::pgoutput::{self, Column, Message, Relation, Tuple, Value};
use crate::position::{self, Cut, HEADER, Position, Resume, format_lsn, parse_lsn};
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
}

impl CdcStats {
    pub fn records(&self) -> u64 {
        self.snapshot_rows + self.inserts + self.updates + self.deletes
    }
}

/// The table being captured.
struct Table {
    schema: String,
    name: String,
    db: String,
    columns: Vec<Column>,
    /// Index of the primary-key column.
    pk: usize,
}

fn now_ms() -> i64 {
    cartflow_core::time::now_micros() / 1000
}

fn pg(what: &str) -> impl Fn(tokio_postgres::Error) -> CdcError + '_ {
    move |e| {
        CdcError::Postgres(format!("{what}: {}", e.as_db_error().map_or(e.to_string(), |d| d.message().to_owned())))
    }
}

pub async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(pg("connecting"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!("postgres connection: {e}");
        }
    });
    // Timestamps decoded by this session come out in UTC.
    client.batch_execute("SET TimeZone = 'UTC'").await.map_err(pg("setting the time zone"))?;
    Ok(client)
}

/// Splits `schema.table` (default schema `public`) and quotes both.
pub fn qualified(table: &str) -> (String, String, String) {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    (schema.to_owned(), name.to_owned(), format!("{}.{}", quote(schema), quote(name)))
}

async fn describe(client: &Client, table: &str) -> Result<Table> {
    let (schema, name, _) = qualified(table);
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid::int8, coalesce(i.indisprimary, false)
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY(i.indkey)
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&schema, &name],
        )
        .await
        .map_err(pg("reading the table's columns"))?;
    if rows.is_empty() {
        return Err(CdcError::Table(format!("{table}: no such table")));
    }
    let columns: Vec<Column> =
        rows.iter().map(|r| Column { name: r.get(0), type_oid: r.get::<_, i64>(1) as u32, key: r.get(2) }).collect();
    let keys: Vec<usize> = columns.iter().enumerate().filter(|(_, c)| c.key).map(|(i, _)| i).collect();
    let integer = |oid: u32| matches!(oid, 20 | 21 | 23);
    let [pk] = keys[..] else {
        return Err(CdcError::Table(format!("{table}: needs a primary key of one integer column")));
    };
    if !integer(columns[pk].type_oid) {
        return Err(CdcError::Table(format!("{table}: its primary key {} is not an integer", columns[pk].name)));
    }
    let identity: String = client
        .query_one(
            "SELECT c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &name],
        )
        .await
        .map_err(pg("reading the replica identity"))?
        .get(0);
    if identity != "f" {
        tracing::warn!(
            "{table}: REPLICA IDENTITY is not FULL, so deletes and updates carry only the key in `before`; \
             `ALTER TABLE {table} REPLICA IDENTITY FULL` gives the whole row"
        );
    }
    let db: String = client.query_one("SELECT current_database()::text", &[]).await.map_err(pg("reading"))?.get(0);
    Ok(Table { schema, name, db, columns, pk })
}

/// The position in the last record of the CDC topic.
fn last_position(log: &dyn EventLog, topic: &str) -> Result<Option<Position>> {
    let Some(info) = log.topic(topic)? else { return Ok(None) };
    if info.partitions.len() != 1 {
        let records: u64 = info.partitions.iter().map(|p| p.end - p.start).sum();
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

struct Writer<'a> {
    producer: Box<dyn Producer>,
    topic: String,
    table: &'a Table,
    server_name: &'a str,
}

impl Writer<'_> {
    fn source(&self, snapshot: &'static str, ts_ms: i64, tx_id: Option<u32>, lsn: Option<u64>) -> Source<'_> {
        Source {
            version: concat!("cartflow-", env!("CARGO_PKG_VERSION")),
            connector: "postgresql",
            name: self.server_name,
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
        let headers: &[(&str, &[u8])] = &[(HEADER, pos.as_bytes())];
        self.producer.send(ProducerRecord::new(&self.topic, Some(key), value).headers(headers))?;
        Ok(())
    }
}

pub async fn run_cdc(
    log: &dyn EventLog,
    cfg: &CdcConfig,
    control: &StageControl,
    progress: &mut dyn FnMut(&CdcStats),
) -> Result<CdcStats> {
    let _running = cartflow_stream::metrics::Running::start("cdc");
    let client = connect(&cfg.postgres).await?;
    let table = describe(&client, &cfg.table).await?;
    let topic = format!("{}.{}.{}", cfg.server_name, table.schema, table.name);
    log.ensure_topic(&topic, cartflow_stream::topics::CDC_PARTITIONS)?;
    let mut stats = CdcStats::default();
    let mut w =
        Writer { producer: log.producer()?, topic: topic.clone(), table: &table, server_name: &cfg.server_name };

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
    if let Resume::Snapshot { after_pk, cuts } = resume {
        resume = snapshot(cfg, &mut w, after_pk, cuts, &mut stats, control, progress).await?;
    }
    let Resume::Stream { mut after, mut cuts } = resume else { unreachable!("the snapshot ends in streaming") };
    stream(&client, cfg, &mut w, &mut after, &mut cuts, &mut stats, control, progress).await?;
    Ok(stats)
}

/// A replication slot of the name this capture uses. Slots are cluster-wide:
/// one of that name may belong to another database's capture, or be in use.
struct Slot {
    database: String,
    plugin: String,
    active_pid: Option<i32>,
}

/// What the publication's comment says when this capture made the slot.
fn ownership(cfg: &CdcConfig) -> String {
    format!("cartflow cdc of {} through slot {}", cfg.table, cfg.slot)
}

/// Marks the slot as this capture's, in its publication (which lives in this database).
async fn mark_ours(client: &Client, cfg: &CdcConfig) -> Result<()> {
    let name = cfg.publication.replace('"', "\"\"");
    let comment = ownership(cfg).replace('\'', "''");
    client
        .batch_execute(&format!("COMMENT ON PUBLICATION \"{name}\" IS '{comment}'"))
        .await
        .map_err(pg("marking the slot as this capture's"))
}

impl Slot {
    /// Takes the capture's lock on its slot name for this session's life: a
    /// capture reads its slot through SQL, so the slot itself shows active only
    /// for the moment of each read, and a second capture must not take it then.
    async fn lock(client: &Client, cfg: &CdcConfig, db: &str) -> Result<()> {
        let key = format!("cartflow cdc slot {}", cfg.slot);
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&key])
            .await
            .map_err(pg("taking the capture's lock"))?
            .get(0);
        if !locked {
            return Err(CdcError::Table(format!(
                "replication slot {:?} of database {db:?} is in use by another capture: give this one a slot \
                 of its own with --slot NAME (or cdc.slot)",
                cfg.slot
            )));
        }
        Ok(())
    }

    /// The slot named `cfg.slot`, refused when it is not this database's or is in use.
    async fn find(client: &Client, cfg: &CdcConfig, db: &str) -> Result<Option<Slot>> {
        let row = client
            .query_opt(
                "SELECT database::text, plugin::text, active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&cfg.slot],
            )
            .await
            .map_err(pg("reading the slots"))?;
        let Some(row) = row else { return Ok(None) };
        let slot = Slot {
            database: row.get::<_, Option<String>>(0).unwrap_or_default(),
            plugin: row.get(1),
            active_pid: row.get(2),
        };
        let fix = "give this capture a slot of its own with --slot NAME (or cdc.slot)";
        if slot.database != db {
            return Err(CdcError::Table(format!(
                "replication slot {:?} belongs to database {:?}, not {db:?} (slots are cluster-wide): {fix}",
                cfg.slot, slot.database
            )));
        }
        if let Some(pid) = slot.active_pid {
            return Err(CdcError::Table(format!(
                "replication slot {:?} of database {db:?} is in use by server process {pid} (another capture?): {fix}",
                cfg.slot
            )));
        }
        if slot.plugin != "pgoutput" {
            return Err(CdcError::Table(format!(
                "replication slot {:?} of database {db:?} decodes with {}, not pgoutput: not a capture's; {fix}",
                cfg.slot, slot.plugin
            )));
        }
        Ok(Some(slot))
    }

    /// Drops the slot when this capture made it and its topic holds nothing;
    /// a slot someone else made is refused, not dropped.
    async fn drop_if_ours(&self, client: &Client, cfg: &CdcConfig, topic: &str) -> Result<()> {
        let comment: Option<String> = client
            .query_opt(
                "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = $1",
                &[&cfg.publication],
            )
            .await
            .map_err(pg("reading the publication"))?
            .and_then(|r| r.get(0));
        if comment.as_deref() != Some(ownership(cfg).as_str()) {
            return Err(CdcError::Table(format!(
                "replication slot {:?} of database {:?} exists but this capture did not make it, and {topic} is empty: \
                 drop it yourself if it is unused (SELECT pg_drop_replication_slot('{}')), or give this capture \
                 a slot of its own with --slot NAME (or cdc.slot)",
                cfg.slot, self.database, cfg.slot
            )));
        }
        client.execute("SELECT pg_drop_replication_slot($1)", &[&cfg.slot]).await.map_err(pg("dropping the slot"))?;
        Ok(())
    }
}

async fn ensure_publication(client: &Client, cfg: &CdcConfig) -> Result<()> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&cfg.publication])
        .await
        .map_err(pg("reading the publications"))?
        .is_some();
    if !exists {
        let (_, _, table) = qualified(&cfg.table);
        let name = cfg.publication.replace('"', "\"\"");
        client
            .batch_execute(&format!("CREATE PUBLICATION \"{name}\" FOR TABLE {table}"))
            .await
            .map_err(pg("creating the publication"))?;
    }
    Ok(())
}

/// One snapshot pass over the keys after `after_pk`, consistent with the
/// slot: writers are held off just long enough to fix the pass's LSN and
/// export its snapshot, which a second session then reads page by page.
async fn snapshot(
    cfg: &CdcConfig,
    w: &mut Writer<'_>,
    after_pk: i64,
    cuts: Vec<Cut>,
    stats: &mut CdcStats,
    control: &StageControl,
    progress: &mut dyn FnMut(&CdcStats),
) -> Result<Resume> {
    let (_, _, table) = qualified(&cfg.table);
    let mut lock = connect(&cfg.postgres).await?;
    let tx = lock.transaction().await.map_err(pg("starting the snapshot"))?;
    tx.batch_execute(&format!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; LOCK TABLE {table} IN SHARE MODE"))
        .await
        .map_err(pg("locking the table for the snapshot"))?;
    let row = tx
        .query_one("SELECT pg_current_wal_insert_lsn()::text, pg_export_snapshot()", &[])
        .await
        .map_err(pg("exporting the snapshot"))?;
    let lsn = parse_lsn(row.get(0)).ok_or_else(|| CdcError::Postgres("unreadable LSN".into()))?;
    let name: String = row.get(1);
    let mut reader = connect(&cfg.postgres).await?;
    let read = reader.transaction().await.map_err(pg("starting the snapshot read"))?;
    read.batch_execute(&format!(
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{name}'"
    ))
    .await
    .map_err(pg("importing the snapshot"))?;
    tx.commit().await.map_err(pg("releasing the table"))?;
    tracing::info!(lsn = format_lsn(lsn), after_pk, "snapshot pass");

    let t = w.table;
    let select: Vec<String> = t.columns.iter().map(|c| format!("\"{}\"::text", c.name.replace('"', "\"\""))).collect();
    let pk_name = t.columns[t.pk].name.replace('"', "\"\"");
    let page = read
        .prepare(&format!(
            "SELECT \"{pk_name}\"::int8, {} FROM {table} WHERE \"{pk_name}\" > $1 ORDER BY 1 LIMIT $2",
            select.join(", ")
        ))
        .await
        .map_err(pg("preparing the snapshot read"))?;
    // Each page's last row waits for the next page, so the snapshot's very
    // last record can say so (Debezium's `snapshot: last`).
    let mut held: Option<(i64, Tuple)> = None;
    let mut from = after_pk;
    loop {
        if control.stopped() {
            w.producer.flush()?;
            return Err(CdcError::Stopped);
        }
        let rows = read.query(&page, &[&from, &(cfg.batch as i64)]).await.map_err(pg("reading a snapshot page"))?;
        let Some(last) = rows.last() else { break };
        from = last.get(0);
        for r in &rows {
            if let Some((pk, tuple)) = held.take() {
                write_snapshot_row(w, pk, &tuple, lsn, &cuts, false)?;
                stats.snapshot_rows += 1;
            }
            let tuple: Tuple =
                (1..r.len()).map(|i| r.get::<_, Option<String>>(i).map_or(Value::Null, Value::Text)).collect();
            held = Some((r.get(0), tuple));
        }
        w.producer.flush()?;
        metrics::counter!(EVENTS_OUT, "stage" => "cdc", "topic" => w.topic.clone()).increment(rows.len() as u64);
        progress(stats);
    }
    if let Some((pk, tuple)) = held {
        write_snapshot_row(w, pk, &tuple, lsn, &cuts, true)?;
        stats.snapshot_rows += 1;
        w.producer.flush()?;
    }
    read.commit().await.map_err(pg("ending the snapshot read"))?;
    progress(stats);
    Ok(Resume::Stream { after: None, cuts: position::finish(cuts, lsn) })
}

fn write_snapshot_row(w: &mut Writer<'_>, pk: i64, tuple: &Tuple, lsn: u64, cuts: &[Cut], last: bool) -> Result<()> {
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
async fn stream(
    client: &Client,
    cfg: &CdcConfig,
    w: &mut Writer<'_>,
    after: &mut Option<(u64, u32)>,
    cuts: &mut Vec<Cut>,
    stats: &mut CdcStats,
    control: &StageControl,
    progress: &mut dyn FnMut(&CdcStats),
) -> Result<()> {
    let peek = client
        .prepare(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, \
             'proto_version', '1', 'publication_names', $3)",
        )
        .await
        .map_err(pg("preparing the slot read"))?;
    // Where the slot stands before this run confirms anything (a drain with
    // no changes confirms nothing, and should still say where the slot is).
    let confirmed: Option<String> = client
        .query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", &[&cfg.slot])
        .await
        .map_err(pg("reading the slot's position"))?
        .get(0);
    stats.confirmed_lsn = confirmed.unwrap_or_default();
    let mut relations: HashMap<u32, Relation> = HashMap::new();
    while !control.stopped() {
        let rows = client
            .query(&peek, &[&cfg.slot, &(cfg.batch as i32), &cfg.publication])
            .await
            .map_err(pg("reading the slot"))?;
        if rows.is_empty() {
            if control.draining() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(cfg.poll_ms)).await;
            continue;
        }
        let mut txn = Txn::default();
        let mut confirm = None;
        let before = stats.records();
        for row in &rows {
            let data: &[u8] = row.get(0);
            match pgoutput::decode(data)? {
                Message::Begin { final_lsn, commit_ts_us, xid } => {
                    txn = Txn { commit: final_lsn, xid, ts_ms: commit_ts_us / 1000, changes: 0 };
                    *cuts = position::still_needed(std::mem::take(cuts), final_lsn);
                }
                Message::Commit { end_lsn, .. } => confirm = Some(end_lsn),
                Message::Relation(r) => {
                    relations.insert(r.id, r);
                }
                Message::Insert { relation, new } => {
                    change(w, &relations, relation, &mut txn, after, cuts, stats, "c", None, Some(new))?
                }
                Message::Update { relation, old, new } => {
                    change(w, &relations, relation, &mut txn, after, cuts, stats, "u", old, Some(new))?
                }
                Message::Delete { relation, old } => {
                    change(w, &relations, relation, &mut txn, after, cuts, stats, "d", Some(old), None)?
                }
                Message::Other(_) => {}
            }
        }
        // Durable in the log first, then the slot may forget them.
        w.producer.flush()?;
        if let Some(lsn) = confirm {
            let lsn = format_lsn(lsn);
            client
                .execute("SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)", &[&cfg.slot, &lsn])
                .await
                .map_err(pg("confirming the slot's position"))?;
            stats.confirmed_lsn = lsn;
        }
        metrics::counter!(EVENTS_OUT, "stage" => "cdc", "topic" => w.topic.clone()).increment(stats.records() - before);
        progress(stats);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn change(
    w: &mut Writer<'_>,
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

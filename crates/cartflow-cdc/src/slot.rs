//! PostgreSQL's side of a capture: the replication slot (whose it is, and
//! that one capture at a time reads it), and the capture's [`Input`] for the
//! stage driver: the pages of a snapshot pass, then the slot's changes.
//!
//! The slot is read through SQL (`pg_logical_slot_peek_binary_changes`),
//! not the streaming replication protocol: tokio-postgres speaks no
//! replication protocol, and peeking then advancing after the records are
//! durable gives the same at-least-once read the position headers make exact.

use std::time::Duration;

use cartflow_stream::driver::Input;
use cartflow_stream::metrics::{CDC_SLOT_RETAINED, CONSUMER_LAG, EVENTS_IN};
use tokio::runtime::Handle;
use tokio_postgres::{Client, Statement};

use crate::capture::CdcConfig;
use crate::pgoutput::{Tuple, Value};
use crate::position::{format_lsn, parse_lsn};
use crate::table::{Table, connect, pg, qualified};
use crate::{CdcError, Result};

/// A replication slot of the name this capture uses. Slots are cluster-wide:
/// one of that name may belong to another database's capture, or be in use.
pub(crate) struct Slot {
    database: String,
    plugin: String,
    active_pid: Option<i32>,
}

/// What the publication's comment says when this capture made the slot.
fn ownership(cfg: &CdcConfig) -> String {
    format!("cartflow cdc of {} through slot {}", cfg.table, cfg.slot)
}

/// Marks the slot as this capture's, in its publication (which lives in this database).
pub(crate) async fn mark_ours(client: &Client, cfg: &CdcConfig) -> Result<()> {
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
    pub(crate) async fn lock(client: &Client, cfg: &CdcConfig, db: &str) -> Result<()> {
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
    pub(crate) async fn find(client: &Client, cfg: &CdcConfig, db: &str) -> Result<Option<Slot>> {
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
    pub(crate) async fn drop_if_ours(&self, client: &Client, cfg: &CdcConfig, topic: &str) -> Result<()> {
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

pub(crate) async fn ensure_publication(client: &Client, cfg: &CdcConfig) -> Result<()> {
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

/// What the capture reads, in order.
pub(crate) enum Change {
    /// A row of the snapshot pass at `lsn`.
    Row { pk: i64, tuple: Tuple, lsn: u64 },
    /// The pass at `lsn` has read every remaining key.
    SnapshotEnd { lsn: u64 },
    /// One pgoutput message of the slot.
    Wal(Vec<u8>),
}

/// A snapshot pass being read, in a repeatable-read transaction of its own session.
struct Pass {
    reader: Client,
    page: Statement,
    lsn: u64,
    /// The last key read.
    from: i64,
}

/// The capture's input: a snapshot pass (when one is due), then the slot.
pub(crate) struct SlotInput {
    runtime: Handle,
    /// The capture's session: it holds the lock on the slot's name.
    client: Client,
    slot: String,
    publication: String,
    pass: Option<Pass>,
    peek: Statement,
    /// Items the last poll returned (committed before the next poll).
    last_poll: usize,
    /// The last peek of the slot found nothing: wait before the next.
    idle: bool,
}

impl SlotInput {
    pub(crate) async fn open(runtime: Handle, client: Client, cfg: &CdcConfig) -> Result<SlotInput> {
        let peek = client
            .prepare(
                "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, \
                 'proto_version', '1', 'publication_names', $3)",
            )
            .await
            .map_err(pg("preparing the slot read"))?;
        Ok(SlotInput {
            runtime,
            client,
            slot: cfg.slot.clone(),
            publication: cfg.publication.clone(),
            pass: None,
            peek,
            last_poll: 0,
            idle: false,
        })
    }

    /// Starts a snapshot pass over the keys after `after_pk`, consistent with
    /// the slot: writers are held off just long enough to fix the pass's LSN
    /// and export its snapshot, which a second session then reads page by page.
    pub(crate) async fn start_pass(&mut self, cfg: &CdcConfig, t: &Table, after_pk: i64) -> Result<()> {
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
        let reader = connect(&cfg.postgres).await?;
        // A transaction by statements: a `Transaction` would borrow the session it lives in.
        reader
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{name}'"
            ))
            .await
            .map_err(pg("importing the snapshot"))?;
        tx.commit().await.map_err(pg("releasing the table"))?;
        tracing::info!(lsn = format_lsn(lsn), after_pk, "snapshot pass");
        let select: Vec<String> =
            t.columns.iter().map(|c| format!("\"{}\"::text", c.name.replace('"', "\"\""))).collect();
        let pk_name = t.columns[t.pk].name.replace('"', "\"\"");
        let page = reader
            .prepare(&format!(
                "SELECT \"{pk_name}\"::int8, {} FROM {table} WHERE \"{pk_name}\" > $1 ORDER BY 1 LIMIT $2",
                select.join(", ")
            ))
            .await
            .map_err(pg("preparing the snapshot read"))?;
        self.pass = Some(Pass { reader, page, lsn, from: after_pk });
        Ok(())
    }

    /// A snapshot pass is still being read (its end not yet handed out).
    pub(crate) fn in_pass(&self) -> bool {
        self.pass.is_some()
    }

    /// Where the slot stands, as its confirmed position.
    pub(crate) async fn confirmed(&self) -> Result<String> {
        let confirmed: Option<String> = self
            .client
            .query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", &[&self.slot])
            .await
            .map_err(pg("reading the slot's position"))?
            .get(0);
        Ok(confirmed.unwrap_or_default())
    }

    async fn read_page(&mut self, max: usize) -> Result<Vec<Change>> {
        let pass = self.pass.as_mut().expect("a pass is being read");
        let rows =
            pass.reader.query(&pass.page, &[&pass.from, &(max as i64)]).await.map_err(pg("reading a snapshot page"))?;
        let Some(last) = rows.last() else {
            let pass = self.pass.take().expect("a pass is being read");
            pass.reader.batch_execute("COMMIT").await.map_err(pg("ending the snapshot read"))?;
            return Ok(vec![Change::SnapshotEnd { lsn: pass.lsn }]);
        };
        pass.from = last.get(0);
        let lsn = pass.lsn;
        Ok(rows
            .iter()
            .map(|r| Change::Row {
                pk: r.get(0),
                tuple: (1..r.len()).map(|i| r.get::<_, Option<String>>(i).map_or(Value::Null, Value::Text)).collect(),
                lsn,
            })
            .collect())
    }

    async fn peek(&self, max: usize) -> Result<Vec<Change>> {
        let rows = self
            .client
            .query(&self.peek, &[&self.slot, &(max as i32), &self.publication])
            .await
            .map_err(pg("reading the slot"))?;
        Ok(rows.iter().map(|r| Change::Wal(r.get::<_, &[u8]>(0).to_vec())).collect())
    }

    async fn retained_wal(&self) -> Result<i64> {
        let row = self
            .client
            .query_one(
                "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::int8 \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await
            .map_err(pg("reading the slot's retained WAL"))?;
        Ok(row.get(0))
    }
}

impl Input for SlotInput {
    type Item = Change;
    /// The end of the last transaction the outputs hold, to advance the slot to.
    type Position = Option<u64>;

    /// A snapshot page while a pass runs; then the slot's complete
    /// transactions (the peek stops at a commit), after `wait` when the last
    /// poll found nothing.
    fn poll(&mut self, max: usize, wait: Duration) -> cartflow_stream::Result<Vec<Change>> {
        let runtime = self.runtime.clone();
        let changes = if self.pass.is_some() {
            runtime.block_on(self.read_page(max))?
        } else {
            if self.idle {
                std::thread::sleep(wait);
            }
            let changes = runtime.block_on(self.peek(max))?;
            self.idle = changes.is_empty();
            changes
        };
        self.last_poll = changes.len();
        Ok(changes)
    }

    /// What the last poll took: a lower bound of what waits (the slot cannot
    /// say how many changes it holds for this database without decoding them).
    fn lag(&mut self, stage: &'static str) -> cartflow_stream::Result<u64> {
        let retained = self.runtime.block_on(self.retained_wal())?;
        metrics::gauge!(CDC_SLOT_RETAINED, "slot" => self.slot.clone()).set(retained as f64);
        metrics::gauge!(CONSUMER_LAG, "stage" => stage, "topic" => format!("slot:{}", self.slot), "partition" => "0")
            .set(self.last_poll as f64);
        Ok(self.last_poll as u64)
    }

    fn count(&self, stage: &'static str, batch: &[Change]) {
        metrics::counter!(EVENTS_IN, "stage" => stage, "topic" => format!("slot:{}", self.slot))
            .increment(batch.len() as u64);
    }

    fn commit(&mut self, position: Option<u64>) -> cartflow_stream::Result<()> {
        let Some(lsn) = position else { return Ok(()) };
        let lsn = format_lsn(lsn);
        self.runtime
            .block_on(
                self.client.execute("SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)", &[&self.slot, &lsn]),
            )
            .map_err(pg("confirming the slot's position"))?;
        Ok(())
    }
}

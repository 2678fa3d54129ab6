//! `warehouse build`: bronze → silver and gold, incrementally by event hour.
//!
//! 1. list the bronze files and fingerprint each hour's inputs ([`crate::hours`]);
//! 2. for each day with changed hours, run silver's SQL over their bronze
//!    (with the earlier hours' silver for session order) and write their
//!    silver and fact_events files;
//! 3. when anything changed, rebuild the whole gold tables from silver;
//! 4. put the new state, then delete files no state names ([`crate::state`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::common::TableReference;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::catalog::{register_files, register_state};
use crate::hours::{BronzeHours, DayChunk, Hour, fingerprint, input_fingerprints, plan};
use crate::state::{FORMAT, HourState, STATE_FILE, State, TableFile};
use crate::tables::{FACT_EVENT_COLUMNS, GOLD_TABLES, SILVER_COLUMNS, SILVER_EVENTS};
use crate::{Result, Warehouse, WarehouseError};

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Only hours at or after this one.
    pub since: Option<Hour>,
    /// Only hours before this one.
    pub until: Option<Hour>,
    /// Build without bronze files that cannot be read instead of stopping.
    pub skip_damaged: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BuildReport {
    pub hours_built: usize,
    pub hours_unchanged: usize,
    /// Bronze hours left for a later build by --since/--until.
    pub hours_outside_range: usize,
    pub silver_rows_written: u64,
    pub silver_rows_total: u64,
    /// Gold tables rebuilt, with their rows.
    pub gold_tables: Vec<(String, u64)>,
    pub files_deleted: usize,
    /// Bronze files left out as unreadable (`skip_damaged`), and why.
    pub files_skipped: Vec<(String, String)>,
    pub seconds: f64,
}

/// Progress through the days of a build.
#[derive(Debug, Clone, Copy)]
pub struct BuildProgress {
    pub days_done: usize,
    pub days: usize,
    pub silver_rows: u64,
}

impl Warehouse {
    /// Brings silver and gold up to date with bronze.
    pub fn build(&mut self, opts: &BuildOptions, progress: &mut dyn FnMut(BuildProgress)) -> Result<BuildReport> {
        let started = Instant::now();
        // Read before listing: bronze then holds at least what these offsets
        // name, and an event both in silver and replayed later is an exact
        // duplicate the features count once.
        let lake = cartflow_lake::Lake::open(&self.location, cartflow_lake::layout::SINK_WRITER)?;
        let lake_offsets = lake.committed_offsets()?;
        let bronze = self.block_on(list_bronze(self.store.as_ref()))?;
        let inputs = input_fingerprints(&bronze, FORMAT);
        let built: BTreeMap<Hour, String> = self.state.hours.iter().map(|(h, s)| (*h, s.inputs.clone())).collect();
        let chunks = plan(&bronze, &inputs, &built, opts.since, opts.until);
        let stale = inputs.iter().filter(|(h, fp)| built.get(h) != Some(fp)).count();
        let mut report = BuildReport {
            hours_built: chunks.iter().map(|c| c.write.len()).sum(),
            hours_unchanged: inputs.len() - stale,
            ..BuildReport::default()
        };
        report.hours_outside_range = stale - report.hours_built;

        let old = self.state.clone();
        let mut state = old.clone();
        state.format = FORMAT;
        state.lake_offsets = if report.hours_outside_range == 0 { lake_offsets } else { BTreeMap::new() };
        for (i, chunk) in chunks.iter().enumerate() {
            let begun = Instant::now();
            let hours = self.block_on(build_day(self, chunk, &bronze, &inputs, &state, opts, &mut report))?;
            tracing::debug!(hours = hours.len(), secs = begun.elapsed().as_secs_f64(), "silver day built");
            for (hour, h) in hours {
                report.silver_rows_written += h.silver.rows;
                state.hours.insert(hour, h);
            }
            progress(BuildProgress { days_done: i + 1, days: chunks.len(), silver_rows: report.silver_rows_written });
        }

        // Silver first, so a build that fails in gold keeps the hours it did.
        if state != old {
            self.put_state(&mut state)?;
        }
        let gold_inputs = fingerprint(state.hours.values().map(|h| h.inputs.as_str()));
        let gold_current =
            GOLD_TABLES.iter().all(|(name, _)| state.tables.get(*name).is_some_and(|t| t.inputs == gold_inputs));
        if !gold_current && !state.hours.is_empty() {
            self.block_on(register_state(&self.ctx, &self.base, &state))?;
            for (name, sql) in GOLD_TABLES {
                let path = format!("gold/{name}/part-{gold_inputs}.parquet");
                let begun = Instant::now();
                let table = self.block_on(write_table(self, &path, sql))?;
                tracing::info!(
                    table = name,
                    rows = table.rows,
                    secs = begun.elapsed().as_secs_f64(),
                    "gold table built"
                );
                report.gold_tables.push((name.to_string(), table.rows));
                state.tables.insert(name.to_string(), TableFile { inputs: gold_inputs.clone(), ..table });
            }
            self.put_state(&mut state)?;
        }
        let keep: BTreeSet<&str> = state.files().chain(old.files()).collect();
        report.files_deleted =
            self.block_on(delete_unnamed(self.store.as_ref(), &keep)).map_err(|e| self.store_error(e))?;
        self.block_on(register_state(&self.ctx, &self.base, &state))?;
        report.silver_rows_total = state.silver_rows();
        self.state = state;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Replaces the state: the moment a build's files become what readers see.
    fn put_state(&self, state: &mut State) -> Result<()> {
        state.built_at = chrono_now();
        self.put_json(STATE_FILE, state)
    }
}

/// Silver's rows of a day: its bronze `files`, with the `earlier` hours'
/// silver for session order.
async fn silver_rows(w: &Warehouse, files: &[&str], earlier: &[&str]) -> Result<Vec<RecordBatch>> {
    register_files(&w.ctx, &w.base, TableReference::bare("_bronze_day"), files).await?;
    register_files(&w.ctx, &w.base, TableReference::bare("_silver_before"), earlier).await?;
    let none = "(SELECT CAST(NULL AS VARCHAR) AS user_session WHERE FALSE)";
    let sql = SILVER_EVENTS
        .replace("{bronze}", "_bronze_day")
        .replace("{earlier}", if earlier.is_empty() { none } else { "_silver_before" });
    Ok(w.ctx.sql(&sql).await?.collect().await?)
}

/// The files among `files` that do not read through to their last row, with why.
async fn damaged_files(w: &Warehouse, files: &[&str]) -> Vec<(String, String)> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut damaged = Vec::new();
    for &file in files {
        let bytes = match w.store.get(&Path::from(file)).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        let read = bytes.map_err(|e| e.to_string()).and_then(|bytes| {
            let mut rows =
                ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|b| b.build()).map_err(|e| e.to_string())?;
            rows.try_for_each(|batch| batch.map(drop)).map_err(|e| e.to_string())
        });
        if let Err(why) = read {
            damaged.push((file.to_owned(), why));
        }
    }
    damaged
}

/// Bronze event files by hour.
async fn list_bronze(store: &dyn ObjectStore) -> Result<BronzeHours> {
    let prefix = Path::from(cartflow_lake::layout::EVENTS);
    let metas: Vec<_> =
        store.list(Some(&prefix)).try_collect().await.map_err(|e| WarehouseError::Store(e.to_string()))?;
    let mut hours = BronzeHours::new();
    for m in metas {
        let path = m.location.to_string();
        if let Some(hour) = path.ends_with(".parquet").then(|| Hour::from_path(&path)).flatten() {
            hours.entry(hour).or_default().push(path);
        }
    }
    hours.values_mut().for_each(|files| files.sort());
    Ok(hours)
}

/// Silver and fact_events files for one day's changed hours.
async fn build_day(
    w: &Warehouse,
    chunk: &DayChunk,
    bronze: &BronzeHours,
    inputs: &BTreeMap<Hour, String>,
    state: &State,
    opts: &BuildOptions,
    report: &mut BuildReport,
) -> Result<Vec<(Hour, HourState)>> {
    // Session order needs the session's earlier events: from the silver of
    // the hours before the first one rebuilt, when all of those are current
    // (they are, unless --since/--until left some behind), else from bronze.
    let first = chunk.write[0];
    let (before, from): (Vec<Hour>, Vec<Hour>) = chunk.read.iter().partition(|h| **h < first);
    let current = |h: &Hour| state.hours.get(h).is_some_and(|s| Some(&s.inputs) == inputs.get(h));
    let (read, earlier) = if before.iter().all(current) { (from, before) } else { (chunk.read.clone(), vec![]) };
    let mut files: Vec<&str> = read.iter().flat_map(|h| bronze[h].iter().map(String::as_str)).collect();
    let earlier: Vec<&str> = earlier.iter().map(|h| state.hours[h].silver.path.as_str()).collect();
    let batches = match silver_rows(w, &files, &earlier).await {
        Ok(batches) => batches,
        Err(e) => {
            // DataFusion's error seldom names the file: read each one to find it.
            let damaged = damaged_files(w, &files).await;
            let Some((file, why)) = damaged.first() else { return Err(e) };
            if !opts.skip_damaged {
                return Err(WarehouseError::Damaged { file: file.clone(), message: why.clone() });
            }
            for (file, why) in &damaged {
                tracing::warn!(file, "skipping a damaged lake file: {why}");
            }
            files.retain(|f| !damaged.iter().any(|(d, _)| d == f));
            report.files_skipped.extend(damaged);
            silver_rows(w, &files, &earlier).await?
        }
    };
    let schema = batches.first().map(|b| b.schema());
    let mut by_hour = split_by_hour(&batches);
    let mut work = Vec::new();
    for &hour in &chunk.write {
        let rows = by_hour.remove(&hour).unwrap_or_default();
        let rows = match (rows.is_empty(), &schema) {
            (true, Some(s)) => vec![RecordBatch::new_empty(s.clone())],
            (true, None) => return Err(WarehouseError::Invalid(format!("no rows at all for {hour}"))),
            (false, _) => rows,
        };
        work.push((hour, rows));
    }
    // Encoding Parquet is most of a day's time: one thread per hour.
    let encoded: Vec<Result<_>> = std::thread::scope(|s| {
        let threads: Vec<_> = work
            .iter()
            .map(|(hour, rows)| {
                s.spawn(move || {
                    let (dir, fp) = (hour.partition(), &inputs[hour]);
                    let silver = encode(format!("silver/events/{dir}/part-{fp}.parquet"), rows, SILVER_COLUMNS)?;
                    let facts = encode(format!("gold/fact_events/{dir}/part-{fp}.parquet"), rows, FACT_EVENT_COLUMNS)?;
                    Ok((*hour, silver, facts))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("encoder thread")).collect()
    });
    let mut out = Vec::new();
    for result in encoded {
        let (hour, silver, facts) = result?;
        put_all(w, &[&silver, &facts]).await?;
        let file =
            |f: &cartflow_lake::PendingFile| TableFile { path: f.path.clone(), rows: f.rows, inputs: String::new() };
        out.push((hour, HourState { inputs: inputs[&hour].clone(), silver: file(&silver), fact_events: file(&facts) }));
    }
    Ok(out)
}

/// Rows sorted by event time, cut into hours.
fn split_by_hour(batches: &[RecordBatch]) -> BTreeMap<Hour, Vec<RecordBatch>> {
    let mut out: BTreeMap<Hour, Vec<RecordBatch>> = BTreeMap::new();
    for batch in batches {
        let times = batch.column_by_name("event_time").expect("silver has event_time");
        let times = times.as_primitive::<TimestampMicrosecondType>();
        let mut start = 0;
        while start < batch.num_rows() {
            let hour = Hour::of(times.value(start));
            let end = (start..batch.num_rows()).find(|&i| Hour::of(times.value(i)) != hour).unwrap_or(batch.num_rows());
            out.entry(hour).or_default().push(batch.slice(start, end - start));
            start = end;
        }
    }
    out
}

fn encode(path: String, batches: &[RecordBatch], columns: &[&str]) -> Result<cartflow_lake::PendingFile> {
    let schema = batches[0].schema();
    let indices: Vec<usize> = columns.iter().map(|c| schema.index_of(c)).collect::<Result<_, _>>()?;
    let projected: Vec<RecordBatch> = batches.iter().map(|b| b.project(&indices)).collect::<Result<_, _>>()?;
    Ok(cartflow_lake::encode_parquet(path, &projected)?)
}

async fn put_all(w: &Warehouse, files: &[&cartflow_lake::PendingFile]) -> Result<()> {
    let puts = files
        .iter()
        .map(|f| async move { w.store.put(&Path::from(f.path.as_str()), PutPayload::from(f.bytes.clone())).await });
    futures::future::try_join_all(puts).await.map_err(|e| w.store_error(e))?;
    Ok(())
}

/// Runs a whole-table query and writes its result as one file.
async fn write_table(w: &Warehouse, path: &str, sql: &str) -> Result<TableFile> {
    let df = w.ctx.sql(sql).await?;
    let schema = df.schema().inner().clone();
    let mut batches = df.collect().await?;
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema));
    }
    let file = cartflow_lake::encode_parquet(path.to_owned(), &batches)?;
    put_all(w, &[&file]).await?;
    Ok(TableFile { path: file.path, rows: file.rows, inputs: String::new() })
}

/// Deletes silver and gold files that `keep` does not name: what an
/// interrupted build wrote, and what builds before the previous one named.
async fn delete_unnamed(store: &dyn ObjectStore, keep: &BTreeSet<&str>) -> object_store::Result<usize> {
    let mut deleted = 0;
    for prefix in ["silver", "gold"] {
        let metas: Vec<_> = store.list(Some(&Path::from(prefix))).try_collect().await?;
        for m in metas {
            if !keep.contains(m.location.as_ref()) {
                store.delete(&m.location).await?;
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

pub(crate) fn chrono_now() -> String {
    cartflow_core::time::rfc3339(cartflow_core::time::now_micros())
}

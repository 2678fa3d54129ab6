//! The offline feature store: `features.cart_features`, the point-in-time
//! training set, built by replaying silver through the features' own state
//! machine (`cartflow_features`), the same code the online store runs.
//!
//! Silver is one file per event hour, sorted by time within it, so reading
//! the hours in order is a replay in event-time order with no global sort;
//! memory follows the live entities (sessions of about a TTL, users,
//! products) and the rows, not the month.
//!
//! Files go under `features/cart_features/` and `features/_state.json` names
//! them, as the warehouse's own state does: files first, then the state, then
//! the old files go.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use cartflow_core::time::Micros;
use cartflow_core::{Event, EventType};
use cartflow_features::spec::{FEATURES, FeatureType, Value};
use cartflow_features::{Entities, TrainingRow, TrainingSetBuilder};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{Result, Warehouse, WarehouseError};

pub const TRAINING_STATE: &str = "features/_state.json";
pub const TRAINING_TABLE: &str = "cart_features";
/// Rows per Parquet file of the training set.
const ROWS_PER_FILE: usize = 1 << 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainingState {
    pub built_at: String,
    /// The warehouse build it was made from.
    pub silver_built_at: String,
    pub until: Option<String>,
    pub files: Vec<String>,
    pub rows: u64,
}

/// A landed event and where it was in `validated`.
#[derive(Debug, Clone)]
pub struct Landed {
    pub event: Event,
    /// A CDC delete: takes its event back.
    pub delete: bool,
    pub partition: u32,
    pub offset: u64,
}

#[derive(Debug, Clone)]
pub struct TrainingOptions {
    /// Only events before this time (carts, and the purchases that label them).
    pub until: Option<Micros>,
    pub session_ttl: Micros,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TrainingReport {
    pub events: u64,
    pub rows: u64,
    pub positives: u64,
    pub files: usize,
    pub replay_seconds: f64,
    pub seconds: f64,
}

impl Warehouse {
    /// Hands every silver event before `until` to `each`, in event-time order.
    pub fn replay_silver(&self, until: Option<Micros>, each: &mut dyn FnMut(Event)) -> Result<u64> {
        // Decoding runs a file ahead on the other core; the replay itself is
        // sequential by nature (event-time order through one state).
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Event>>>(4);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for path in self.state.silver_files() {
                    if let Err(e) = self.decode_silver(path, &tx) {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            });
            let mut n = 0;
            for events in rx {
                for e in events? {
                    if until.is_some_and(|u| e.event_time >= u) {
                        // Dropping the receiver stops the decoder at its next send.
                        return Ok(n);
                    }
                    n += 1;
                    each(e);
                }
            }
            Ok(n)
        })
    }

    /// Sends one silver file's events, a batch at a time; stops when nobody listens.
    fn decode_silver(&self, path: &str, tx: &std::sync::mpsc::SyncSender<Result<Vec<Event>>>) -> Result<()> {
        let bytes = self
            .block_on(async { self.store.get(&Path::from(path)).await?.bytes().await })
            .map_err(|e| self.store_error(e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
        // Only the nine dataset fields: silver's derived columns are not features' inputs.
        let mask = ProjectionMask::columns(builder.parquet_schema(), cartflow_core::FIELDS);
        for batch in builder.with_projection(mask).with_batch_size(65_536).build()? {
            if tx.send(Ok(events_of(&batch?)?)).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// The entity state at the end of silver, per partition of a `validated`
    /// topic of `partitions` partitions (each event where the validator's
    /// key puts it): what `features materialize` loads, as the streamers of
    /// those partitions would have built it.
    pub fn replay_entities(&self, session_ttl: Micros, partitions: u32) -> Result<(Vec<Entities>, u64)> {
        let mut shards: Vec<Entities> = (0..partitions.max(1)).map(|_| Entities::new(session_ttl)).collect();
        let events = self.replay_silver(None, &mut |e| {
            let p = e.partition_in(partitions);
            shards[p as usize].apply(&e, false);
        })?;
        for shard in &mut shards {
            shard.expire_sessions();
        }
        Ok((shards, events))
    }

    /// Landed events (bronze, as the lake sink wrote them) at or beyond the
    /// given `validated` offsets (partition → next offset; partitions not
    /// named: from the start), in event-time order.
    pub fn landed_after(&self, from: &BTreeMap<u32, u64>) -> Result<Vec<Landed>> {
        let mut beyond: Vec<String> =
            from.iter().map(|(p, o)| format!("(_partition = {p} AND _offset >= {o})")).collect();
        let known: Vec<String> = from.keys().map(u32::to_string).collect();
        beyond.push(if known.is_empty() { "TRUE".into() } else { format!("_partition NOT IN ({})", known.join(", ")) });
        let sql = format!(
            "SELECT event_time, event_type, product_id, category_id, category_code, brand, price, user_id, user_session, \
             _op, _partition, _offset FROM bronze.events WHERE {} ORDER BY event_time, _partition, _offset",
            beyond.join(" OR ")
        );
        let mut out = Vec::new();
        for batch in self.sql(&sql)? {
            let ops = cast(batch.column(9), &DataType::Utf8)?;
            let ops = ops.as_string::<i32>();
            let partitions = cast(batch.column(10), &DataType::Int64)?;
            let offsets = cast(batch.column(11), &DataType::Int64)?;
            let (partitions, offsets) = (
                partitions.as_primitive::<datafusion::arrow::datatypes::Int64Type>(),
                offsets.as_primitive::<datafusion::arrow::datatypes::Int64Type>(),
            );
            for (i, event) in events_of(&batch)?.into_iter().enumerate() {
                out.push(Landed {
                    event,
                    delete: ops.is_valid(i) && ops.value(i) == "d",
                    partition: partitions.value(i) as u32,
                    offset: offsets.value(i) as u64,
                });
            }
        }
        Ok(out)
    }

    /// Builds `features.cart_features` from silver.
    pub fn build_training_set(&mut self, opts: &TrainingOptions) -> Result<TrainingReport> {
        if self.state.hours.is_empty() {
            return Err(WarehouseError::Invalid("silver is empty: run `cartflow warehouse build` first".into()));
        }
        let started = Instant::now();
        let mut builder = TrainingSetBuilder::new(opts.session_ttl);
        let events = self.replay_silver(opts.until, &mut |e| builder.push(e))?;
        let (rows, _) = builder.finish();
        let replay_seconds = started.elapsed().as_secs_f64();

        let old = self.read_training_state()?;
        let built_at = crate::build::chrono_now();
        let stamp = built_at.replace([':', '-'], "");
        let mut state = TrainingState {
            built_at,
            silver_built_at: self.state.built_at.clone(),
            until: opts.until.map(cartflow_core::time::rfc3339),
            files: Vec::new(),
            rows: rows.len() as u64,
        };
        for (i, chunk) in rows.chunks(ROWS_PER_FILE).enumerate() {
            let path = format!("features/{TRAINING_TABLE}/part-{stamp}-{i:04}.parquet");
            let file = cartflow_lake::encode_parquet(path, &[training_batch(chunk)])?;
            self.block_on(self.store.put(&Path::from(file.path.as_str()), PutPayload::from(file.bytes)))
                .map_err(|e| self.store_error(e))?;
            state.files.push(file.path);
        }
        self.put_json(TRAINING_STATE, &state)?;
        let keep: BTreeSet<&str> = state.files.iter().map(String::as_str).collect();
        for gone in old.files.iter().filter(|f| !keep.contains(f.as_str())) {
            match self.block_on(self.store.delete(&Path::from(gone.as_str()))) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.store_error(e)),
            }
        }
        self.register_training_set(&state)?;
        Ok(TrainingReport {
            events,
            rows: state.rows,
            positives: rows.iter().filter(|r| r.is_purchased).count() as u64,
            files: state.files.len(),
            replay_seconds,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    pub fn read_training_state(&self) -> Result<TrainingState> {
        self.block_on(crate::read_json(self.store.as_ref(), TRAINING_STATE))
    }

    pub(crate) fn register_training_set(&self, state: &TrainingState) -> Result<()> {
        let files: Vec<&str> = state.files.iter().map(String::as_str).collect();
        let table = datafusion::common::TableReference::partial("features", TRAINING_TABLE);
        self.block_on(crate::catalog::register_files(&self.ctx, &self.base, table, &files))
    }
}

/// The training set's Arrow schema: keys, every feature in catalogue order, the label.
pub fn training_schema() -> Schema {
    let mut fields = vec![
        Field::new("event_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("product_id", DataType::Int64, false),
        Field::new("user_session", DataType::Utf8, false),
    ];
    fields.extend(FEATURES.iter().map(|f| {
        let ty = match f.dtype {
            FeatureType::Int64 => DataType::Int64,
            FeatureType::Float64 => DataType::Float64,
            FeatureType::String => DataType::Utf8,
        };
        Field::new(f.name, ty, true)
    }));
    fields.push(Field::new("is_purchased", DataType::Boolean, false));
    Schema::new(fields)
}

/// Rows of the training set as a batch of [`training_schema`].
pub fn training_batch(rows: &[TrainingRow]) -> RecordBatch {
    let n = rows.len();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.event_time)).with_timezone("UTC")),
        Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(rows.iter().map(|r| r.user_id))),
        Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(rows.iter().map(|r| r.product_id))),
        Arc::new(datafusion::arrow::array::StringArray::from_iter_values(rows.iter().map(|r| &r.user_session))),
    ];
    for f in &FEATURES {
        let values = rows.iter().map(|r| (f.get)(&r.features));
        let column: ArrayRef = match f.dtype {
            FeatureType::Int64 => {
                let mut b = Int64Builder::with_capacity(n);
                values.for_each(|v| b.append_option(if let Value::Int(i) = v { Some(i) } else { None }));
                Arc::new(b.finish())
            }
            FeatureType::Float64 => {
                let mut b = Float64Builder::with_capacity(n);
                values.for_each(|v| b.append_option(if let Value::Float(x) = v { Some(x) } else { None }));
                Arc::new(b.finish())
            }
            FeatureType::String => {
                let mut b = StringBuilder::with_capacity(n, n * 8);
                values.for_each(|v| b.append_option(if let Value::Str(s) = v { Some(s) } else { None }));
                Arc::new(b.finish())
            }
        };
        columns.push(column);
    }
    columns.push(Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.is_purchased)))));
    RecordBatch::try_new(Arc::new(training_schema()), columns).expect("columns match the schema")
}

/// Silver rows as events (the nine dataset fields).
fn events_of(batch: &RecordBatch) -> Result<Vec<Event>> {
    let column = |name: &str| -> Result<&ArrayRef> {
        batch.column_by_name(name).ok_or_else(|| WarehouseError::Invalid(format!("silver has no column {name}")))
    };
    let int64 = |name: &str| -> Result<ArrayRef> { Ok(cast(column(name)?, &DataType::Int64)?) };
    let string = |name: &str| -> Result<ArrayRef> { Ok(cast(column(name)?, &DataType::Utf8)?) };
    let (time, product, category, user) =
        (int64("event_time")?, int64("product_id")?, int64("category_id")?, int64("user_id")?);
    let (kind, code, brand, session) =
        (string("event_type")?, string("category_code")?, string("brand")?, string("user_session")?);
    let price = cast(column("price")?, &DataType::Float64)?;
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};
    let (time, product, category, user) = (
        time.as_primitive::<Int64Type>(),
        product.as_primitive::<Int64Type>(),
        category.as_primitive::<Int64Type>(),
        user.as_primitive::<Int64Type>(),
    );
    let price = price.as_primitive::<Float64Type>();
    let (kind, code, brand, session) =
        (kind.as_string::<i32>(), code.as_string::<i32>(), brand.as_string::<i32>(), session.as_string::<i32>());
    let opt = |a: &datafusion::arrow::array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_owned());
    (0..batch.num_rows())
        .map(|i| {
            let event_type: EventType = kind.value(i).parse().map_err(|()| {
                WarehouseError::Invalid(format!("silver event_type {:?} is not an event type", kind.value(i)))
            })?;
            Ok(Event {
                event_time: time.value(i),
                event_type,
                product_id: product.value(i),
                category_id: category.value(i),
                category_code: opt(code, i),
                brand: opt(brand, i),
                price: price.value(i),
                user_id: user.value(i),
                user_session: opt(session, i),
            })
        })
        .collect()
}

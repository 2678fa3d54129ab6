//! The warehouse: bronze, silver and gold over the lake, with DataFusion.
//!
//! - bronze: the lake as landed (`bronze.events`, `bronze.invalid`);
//! - silver: `silver.events`, typed, deduplicated, with category levels,
//!   price tier and order within the session, one Parquet file per event hour;
//! - gold: `fact_events` (by hour), the dimensions and `fact_cart_outcomes`
//!   (whole tables), and two views;
//! - features: `features.cart_features`, the point-in-time training set
//!   ([`training`]), made by the features' own code.
//!
//! Silver and gold are Parquet in the lake (`silver/`, `gold/`), named by
//! `_warehouse/state.json` ([`state`]); `build` keeps them current
//! incrementally ([`build`]); `export` loads gold into PostgreSQL ([`export`]).
//! The lake's object store (local or S3) is registered as `lake://lake/`, so
//! the same table definitions serve every store.

pub mod build;
mod catalog;
pub mod export;
pub mod hours;
pub mod state;
pub mod tables;
pub mod training;

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

pub use build::{BuildOptions, BuildProgress, BuildReport};
pub use export::ExportReport;
pub use hours::Hour;
use state::{STATE_FILE, State};
pub use training::{TrainingOptions, TrainingReport};

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error(transparent)]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error(transparent)]
    Lake(#[from] cartflow_lake::LakeError),
    #[error("object store: {0}")]
    Store(String),
    #[error("{path}: {message}")]
    State { path: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "the lake file {file} cannot be read ({message}); the build stopped before it: restore it, \
         or build without it with `warehouse build --skip-damaged`"
    )]
    Damaged { file: String, message: String },
    #[error("postgres: {0}")]
    Postgres(String),
}

pub type Result<T, E = WarehouseError> = std::result::Result<T, E>;

pub struct Warehouse {
    ctx: SessionContext,
    /// The lake's store, at the lake's location.
    store: Arc<dyn ObjectStore>,
    /// The lake as DataFusion sees it (see [`catalog::base_url`]).
    base: String,
    state: State,
    location: String,
    rt: &'static tokio::runtime::Runtime,
}

/// What DataFusion may hold in memory before sorts and aggregations spill
/// to disk, unless told otherwise: no limit (0), since DataFusion 55's
/// accounting fails sorts that fit in memory (docs/warehouse.md).
pub const DEFAULT_MEMORY_MB: usize = 0;

impl Warehouse {
    /// Opens the lake at `location` and registers every table built so far.
    pub fn open(location: &str) -> Result<Self> {
        Self::open_with_memory(location, DEFAULT_MEMORY_MB)
    }

    /// [`Warehouse::open`], with queries limited to `memory_mb` (0: no limit) before they spill.
    pub fn open_with_memory(location: &str, memory_mb: usize) -> Result<Self> {
        let rt = cartflow_lake::runtime();
        let runtime = match memory_mb {
            0 => RuntimeEnvBuilder::new(),
            mb => RuntimeEnvBuilder::new().with_memory_limit(mb << 20, 1.0),
        }
        .build_arc()?;
        // DATAFUSION_* environment variables tune the engine as DataFusion's own tools allow.
        let mut config = SessionConfig::from_env()?;
        // Plain strings, not string views: a sort's memory accounting charges
        // each view batch for the whole buffers it points into, so sorting a
        // day of sessions "needed" many gigabytes it never used, and failed.
        config.options_mut().execution.parquet.schema_force_view_types = false;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        // One client: DataFusion gets the root, the warehouse's own I/O the prefixed view.
        let (root, prefix) = cartflow_lake::store::open_store_root(location)?;
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            root.clone()
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(root.clone(), prefix.as_str()))
        };
        ctx.register_object_store(&url::Url::parse("lake://lake/").expect("valid URL"), root);
        let base = catalog::base_url(&prefix);
        catalog::create_schemas(&ctx)?;
        let state = rt.block_on(read_json(store.as_ref(), STATE_FILE))?;
        rt.block_on(async {
            use cartflow_lake::{layout, schema};
            let (events, invalid) = (schema::events_schema(), schema::invalid_schema());
            catalog::register_hive_table(&ctx, &base, "bronze", "events", layout::EVENTS, events).await?;
            catalog::register_hive_table(&ctx, &base, "bronze", "invalid", layout::INVALID, invalid).await?;
            catalog::register_state(&ctx, &base, &state).await
        })?;
        let warehouse = Warehouse { ctx, store, base, state, location: location.to_owned(), rt };
        let training = warehouse.read_training_state()?;
        warehouse.register_training_set(&training)?;
        Ok(warehouse)
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// What the last build left.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Runs one SQL statement and collects its result.
    pub fn sql(&self, query: &str) -> Result<Vec<RecordBatch>> {
        self.block_on(async {
            let df = self.ctx.sql(query).await?;
            Ok(df.collect().await?)
        })
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn store_error(&self, e: object_store::Error) -> WarehouseError {
        WarehouseError::Store(format!("{}: {e}", self.location))
    }
}

/// A state file (the warehouse's, the training set's); its default when absent.
async fn read_json<T: serde::de::DeserializeOwned + Default>(store: &dyn ObjectStore, path: &'static str) -> Result<T> {
    match store.get(&Path::from(path)).await {
        Ok(got) => {
            let bytes = got.bytes().await.map_err(|e| WarehouseError::Store(e.to_string()))?;
            serde_json::from_slice(&bytes).map_err(|e| WarehouseError::State { path, message: e.to_string() })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(T::default()),
        Err(e) => Err(WarehouseError::Store(e.to_string())),
    }
}

impl Warehouse {
    /// Replaces a state file: an atomic put on every object store.
    fn put_json<T: serde::Serialize>(&self, path: &str, value: &T) -> Result<()> {
        let body = serde_json::to_vec_pretty(value).expect("state serializes");
        self.block_on(self.store.put(&Path::from(path), object_store::PutPayload::from(body)))
            .map_err(|e| self.store_error(e))?;
        Ok(())
    }
}

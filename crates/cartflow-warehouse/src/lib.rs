//! The warehouse: SQL over the lake with DataFusion.
//!
//! Today: `bronze.events` and `bronze.invalid`, the lake's Parquet as landed
//! (Hive columns `year`, `month`, `day`, `hour` from the path), queryable with
//! `cartflow sql`. Silver and gold are not built yet.
//!
//! The lake's object store (local or S3) is registered under the URL
//! `lake://lake/`, so the same table definitions serve every store.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Lake(#[from] cartflow_lake::LakeError),
}

pub type Result<T, E = WarehouseError> = std::result::Result<T, E>;

const LAKE_URL: &str = "lake://lake/";

pub struct Warehouse {
    ctx: SessionContext,
    rt: tokio::runtime::Runtime,
}

impl Warehouse {
    /// Opens the lake at `location` and registers its tables.
    pub fn open(location: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
        let ctx = SessionContext::new();
        let store = cartflow_lake::store::open_store(location)?;
        let url = url::Url::parse(LAKE_URL).expect("valid URL");
        ctx.register_object_store(&url, store);
        let catalog = ctx.catalog("datafusion").expect("the default catalog");
        catalog.register_schema("bronze", Arc::new(MemorySchemaProvider::new()))?;
        let w = Warehouse { ctx, rt };
        w.register_hive_table(
            "bronze",
            "events",
            cartflow_lake::layout::EVENTS,
            cartflow_lake::schema::events_schema(),
        )?;
        w.register_hive_table(
            "bronze",
            "invalid",
            cartflow_lake::layout::INVALID,
            cartflow_lake::schema::invalid_schema(),
        )?;
        Ok(w)
    }

    /// A Parquet table over `<lake>/<dir>/year=…/month=…/day=…/hour=…/`, as a
    /// view with integer Hive columns.
    ///
    /// The files are registered with text Hive columns under `_<name>_files`
    /// and the view casts them: DataFusion turns equalities on all leading
    /// Hive columns into a listing prefix built from the literals (`day=1`),
    /// which misses the zero-padded folders (`day=01`); through the cast it
    /// prunes by evaluating the filter on each folder's values instead.
    fn register_hive_table(&self, schema: &str, name: &str, dir: &str, file_schema: SchemaRef) -> Result<()> {
        const HIVE: [&str; 4] = ["year", "month", "day", "hour"];
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(HIVE.map(|c| (c.to_owned(), DataType::Utf8)).to_vec());
        let url = ListingTableUrl::parse(format!("{LAKE_URL}{dir}/"))?;
        let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(file_schema.clone());
        let table = ListingTable::try_new(config)?;
        let files = format!("_{name}_files");
        self.ctx.register_table(TableReference::partial(schema, files.as_str()), Arc::new(table))?;
        let columns: Vec<String> = file_schema
            .fields()
            .iter()
            .map(|f| format!("\"{}\"", f.name()))
            .chain(HIVE.map(|c| format!("CAST({c} AS INT) AS {c}")))
            .collect();
        self.sql(&format!("CREATE VIEW {schema}.{name} AS SELECT {} FROM {schema}.{files}", columns.join(", ")))?;
        Ok(())
    }

    /// Runs one SQL statement and collects its result.
    pub fn sql(&self, query: &str) -> Result<Vec<RecordBatch>> {
        self.rt.block_on(async {
            let df = self.ctx.sql(query).await?;
            Ok(df.collect().await?)
        })
    }
}

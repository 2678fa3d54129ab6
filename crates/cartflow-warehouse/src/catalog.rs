//! Tables as DataFusion sees them: bronze over the lake's folders, silver and
//! gold over exactly the files a warehouse state names, and the gold views.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;

use crate::Result;
use crate::state::State;
use crate::tables::{GOLD_TABLES, GOLD_VIEWS};

/// Where DataFusion finds the lake's store: `lake://lake/`, with the
/// location's prefix inside its bucket.
pub fn base_url(prefix: &str) -> String {
    if prefix.is_empty() { "lake://lake/".to_owned() } else { format!("lake://lake/{prefix}/") }
}

pub fn create_schemas(ctx: &SessionContext) -> Result<()> {
    let catalog = ctx.catalog("datafusion").expect("the default catalog");
    for schema in ["bronze", "silver", "gold", "features"] {
        catalog.register_schema(schema, Arc::new(MemorySchemaProvider::new()))?;
    }
    Ok(())
}

fn parquet_options() -> ListingOptions {
    ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet")
}

/// A Parquet table over `<lake>/<dir>/year=…/month=…/day=…/hour=…/`, as a
/// view with integer Hive columns.
///
/// The files are registered with text Hive columns under `_<name>_files`
/// and the view casts them: DataFusion turns equalities on all leading
/// Hive columns into a listing prefix built from the literals (`day=1`),
/// which misses the zero-padded folders (`day=01`); through the cast it
/// prunes by evaluating the filter on each folder's values instead.
pub async fn register_hive_table(
    ctx: &SessionContext,
    base: &str,
    schema: &str,
    name: &str,
    dir: &str,
    file_schema: SchemaRef,
) -> Result<()> {
    const HIVE: [&str; 4] = ["year", "month", "day", "hour"];
    let options = parquet_options().with_table_partition_cols(HIVE.map(|c| (c.to_owned(), DataType::Utf8)).to_vec());
    let url = ListingTableUrl::parse(format!("{base}{dir}/"))?;
    let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(file_schema.clone());
    let files = format!("_{name}_files");
    ctx.register_table(TableReference::partial(schema, files.as_str()), Arc::new(ListingTable::try_new(config)?))?;
    let columns: Vec<String> = file_schema
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .chain(HIVE.map(|c| format!("CAST({c} AS INT) AS {c}")))
        .collect();
    ctx.sql(&format!("CREATE VIEW {schema}.{name} AS SELECT {} FROM {schema}.{files}", columns.join(", "))).await?;
    Ok(())
}

/// A table over exactly these lake files (schema from the first), replacing
/// any table of that name. No files, no table.
pub async fn register_files(ctx: &SessionContext, base: &str, table: TableReference, files: &[&str]) -> Result<()> {
    ctx.deregister_table(table.clone())?;
    if files.is_empty() {
        return Ok(());
    }
    let urls = files.iter().map(|f| ListingTableUrl::parse(format!("{base}{f}"))).collect::<Result<Vec<_>, _>>()?;
    let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(parquet_options());
    let config = config.infer_schema(&ctx.state()).await?;
    ctx.register_table(table, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// Points silver and gold at what `state` names, and (re)creates the views
/// once their tables are there.
pub async fn register_state(ctx: &SessionContext, base: &str, state: &State) -> Result<()> {
    register_files(ctx, base, TableReference::partial("silver", "events"), &state.silver_files()).await?;
    register_files(ctx, base, TableReference::partial("gold", "fact_events"), &state.fact_event_files()).await?;
    for (name, _) in GOLD_TABLES {
        let files: Vec<&str> = state.tables.get(*name).map(|t| t.path.as_str()).into_iter().collect();
        register_files(ctx, base, TableReference::partial("gold", *name), &files).await?;
    }
    let built = GOLD_TABLES.iter().all(|(name, _)| state.tables.contains_key(*name));
    for (name, sql) in GOLD_VIEWS {
        ctx.deregister_table(TableReference::partial("gold", *name))?;
        if built {
            ctx.sql(&format!("CREATE VIEW gold.{name} AS {sql}")).await?;
        }
    }
    Ok(())
}

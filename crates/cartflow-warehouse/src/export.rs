//! `warehouse export --postgres URL`: gold into a PostgreSQL schema, for
//! Superset, Metabase and friends.
//!
//! One transaction. A table already there with the same columns is emptied
//! and loaded again in place (TRUNCATE + COPY), so its indexes, grants and
//! the views users built on it stay; a new one is created with its keys and
//! indexes; one whose columns changed is replaced, unless something depends on
//! it (then the export says what). The views are `CREATE OR REPLACE`d. Running
//! it twice gives the same tables; nothing of the user's is dropped.

use std::time::Instant;

use datafusion::arrow::datatypes::{DataType, Schema};
use futures::{SinkExt, StreamExt};
use tokio_postgres::{NoTls, Transaction};

use crate::tables::{GOLD_KEYS, GOLD_VIEWS};
use crate::{Result, Warehouse, WarehouseError};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExportReport {
    pub schema: String,
    pub tables: Vec<(String, u64)>,
    pub views: usize,
    pub seconds: f64,
}

fn pg(e: tokio_postgres::Error) -> WarehouseError {
    // The server's message says what is wrong; the client's wrapper only says "db error".
    let detail = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string());
    WarehouseError::Postgres(detail)
}

impl Warehouse {
    /// Loads every gold table and view into `schema` of the database at `url`.
    pub fn export_postgres(&self, url: &str, schema: &str) -> Result<ExportReport> {
        if self.state.tables.is_empty() {
            return Err(WarehouseError::Invalid("gold is empty: run `cartflow warehouse build` first".into()));
        }
        if !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(WarehouseError::Invalid(format!("schema {schema:?}: letters, digits and _ only")));
        }
        let started = Instant::now();
        let mut report = self.block_on(async {
            let (mut client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(pg)?;
            let connection = tokio::spawn(connection);
            let tx = client.transaction().await.map_err(pg)?;
            // "schema already exists, skipping" and the like are not news.
            tx.batch_execute(&format!("SET LOCAL client_min_messages = warning; CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(pg)?;
            let mut report = ExportReport { schema: schema.to_owned(), ..ExportReport::default() };
            for (table, key, indexed) in GOLD_KEYS {
                let rows = self.load_table(&tx, &format!("gold.{table}"), schema, table, key, indexed).await?;
                report.tables.push((table.to_string(), rows));
            }
            for (view, sql) in GOLD_VIEWS {
                replace_view(&tx, schema, view, &sql.replace("gold.", &format!("{schema}."))).await?;
                report.views += 1;
            }
            tx.commit().await.map_err(pg)?;
            drop(client);
            let _ = connection.await;
            Ok::<_, WarehouseError>(report)
        })?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Loads `features.cart_features` into `feature_store.cart_features`, in
    /// one transaction, replacing the previous load. Returns the rows.
    pub fn export_training_set(&self, url: &str) -> Result<u64> {
        use crate::training::TRAINING_TABLE;
        let (schema, table) = ("feature_store", TRAINING_TABLE);
        if self.read_training_state()?.files.is_empty() {
            return Err(WarehouseError::Invalid(
                "the training set is empty: run `cartflow features build` first".into(),
            ));
        }
        self.block_on(async {
            let (mut client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(pg)?;
            let connection = tokio::spawn(connection);
            let tx = client.transaction().await.map_err(pg)?;
            tx.batch_execute(&format!("SET LOCAL client_min_messages = warning; CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(pg)?;
            let key = ["user_session", "product_id"];
            let rows = self.load_table(&tx, &format!("features.{table}"), schema, table, &key, &["event_time"]).await?;
            tx.commit().await.map_err(pg)?;
            drop(client);
            let _ = connection.await;
            Ok(rows)
        })
    }

    /// Loads `source` (a table of ours) into `schema.table`: in place when
    /// its columns are the same, else into a new table with `key` and an
    /// index on each of `indexed`. Returns the rows.
    async fn load_table(
        &self,
        tx: &Transaction<'_>,
        source: &str,
        schema: &str,
        table: &str,
        key: &[&str],
        indexed: &[&str],
    ) -> Result<u64> {
        let df = self.ctx.table(source).await?;
        let columns = pg_columns(df.schema().as_arrow())?;
        let target = format!("{schema}.{table}");
        let existing = existing_columns(tx, schema, table).await?;
        // Names and types decide; a primary key makes its columns NOT NULL, which changes nothing here.
        let shape = |cols: &[Column]| cols.iter().map(|(n, t, _)| (n.clone(), t.clone())).collect::<Vec<_>>();
        let fresh = existing.as_deref().map(shape) != Some(shape(&columns));
        if fresh {
            if existing.is_some() {
                tx.batch_execute(&format!("DROP TABLE {target}")).await.map_err(|e| {
                    WarehouseError::Postgres(format!(
                        "{target} has other columns than this export's and cannot be replaced: {} \
                         (drop what depends on it, export, then create it again)",
                        e.as_db_error()
                            .map_or_else(|| e.to_string(), |d| format!("{} {}", d.message(), d.detail().unwrap_or("")))
                    ))
                })?;
            }
            let ddl: Vec<String> = columns
                .iter()
                .map(|(n, t, nullable)| format!("{n} {t}{}", if *nullable { "" } else { " NOT NULL" }))
                .collect();
            tx.batch_execute(&format!("CREATE TABLE {target} ({})", ddl.join(", "))).await.map_err(pg)?;
        } else {
            tx.batch_execute(&format!("TRUNCATE {target}")).await.map_err(pg)?;
        }
        let sink = tx.copy_in(&format!("COPY {target} FROM STDIN (FORMAT csv)")).await.map_err(pg)?;
        futures::pin_mut!(sink);
        let mut stream = df.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let mut buf = Vec::new();
            datafusion::arrow::csv::WriterBuilder::new().with_header(false).build(&mut buf).write(&batch?)?;
            sink.send(bytes::Bytes::from(buf)).await.map_err(pg)?;
        }
        let rows = sink.finish().await.map_err(pg)?;
        let mut ddl = Vec::new();
        if fresh {
            if !key.is_empty() {
                ddl.push(format!("ALTER TABLE {target} ADD PRIMARY KEY ({})", key.join(", ")));
            }
            ddl.extend(indexed.iter().map(|c| format!("CREATE INDEX ON {target} ({c})")));
        }
        ddl.push(format!("ANALYZE {target}"));
        tx.batch_execute(&ddl.join(";\n")).await.map_err(pg)?;
        Ok(rows)
    }
}

/// The columns of `schema.table` as (name, type, nullable), or `None` when there is no such table.
async fn existing_columns(tx: &Transaction<'_>, schema: &str, table: &str) -> Result<Option<Vec<Column>>> {
    let rows = tx
        .query(
            "SELECT column_name::text, data_type::text, is_nullable = 'YES' FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&schema, &table],
        )
        .await
        .map_err(pg)?;
    Ok((!rows.is_empty()).then(|| rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()))
}

/// A view of ours, replaced in place (what users built on it stays); one
/// whose columns changed is dropped and made again when nothing depends on it.
async fn replace_view(tx: &Transaction<'_>, schema: &str, view: &str, sql: &str) -> Result<()> {
    tx.batch_execute("SAVEPOINT view").await.map_err(pg)?;
    if tx.batch_execute(&format!("CREATE OR REPLACE VIEW {schema}.{view} AS {sql}")).await.is_ok() {
        return tx.batch_execute("RELEASE SAVEPOINT view").await.map_err(pg);
    }
    tx.batch_execute("ROLLBACK TO SAVEPOINT view").await.map_err(pg)?;
    tx.batch_execute(&format!("DROP VIEW {schema}.{view}; CREATE VIEW {schema}.{view} AS {sql}")).await.map_err(|e| {
        WarehouseError::Postgres(format!(
            "view {schema}.{view} changed its columns and cannot be replaced: {} (drop what depends on it, export, \
             then create it again)",
            e.as_db_error().map_or_else(|| e.to_string(), |d| format!("{} {}", d.message(), d.detail().unwrap_or("")))
        ))
    })
}

/// A PostgreSQL column: name, type as `information_schema` spells it, nullable.
type Column = (String, String, bool);

/// The PostgreSQL columns of an Arrow schema.
fn pg_columns(schema: &Schema) -> Result<Vec<Column>> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => "integer",
                DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint",
                DataType::Float32 | DataType::Float64 => "double precision",
                DataType::Boolean => "boolean",
                DataType::Date32 | DataType::Date64 => "date",
                DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
                DataType::Timestamp(_, None) => "timestamp without time zone",
                other => {
                    return Err(WarehouseError::Invalid(format!(
                        "column {}: no PostgreSQL type for {other}",
                        f.name()
                    )));
                }
            };
            Ok((f.name().to_owned(), ty.to_owned(), f.is_nullable()))
        })
        .collect()
}

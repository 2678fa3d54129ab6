//! `warehouse export --postgres URL`: gold into a PostgreSQL schema, for
//! Superset, Metabase and friends.
//!
//! One transaction: each table is loaded by COPY into a fresh table, which
//! then replaces the old one and gets its keys and indexes; the views are
//! created again on top. Readers see the previous export until the commit;
//! running it twice gives the same tables.

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
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await.map_err(pg)?;
            for (view, _) in GOLD_VIEWS {
                tx.batch_execute(&format!("DROP VIEW IF EXISTS {schema}.{view}")).await.map_err(pg)?;
            }
            let mut report = ExportReport { schema: schema.to_owned(), ..ExportReport::default() };
            for (table, key, indexed) in GOLD_KEYS {
                let rows = self.copy_table(&tx, &format!("gold.{table}"), schema, table).await?;
                let mut ddl = vec![
                    format!("DROP TABLE IF EXISTS {schema}.{table} CASCADE"),
                    format!("ALTER TABLE {schema}._load_{table} RENAME TO {table}"),
                ];
                if !key.is_empty() {
                    ddl.push(format!("ALTER TABLE {schema}.{table} ADD PRIMARY KEY ({})", key.join(", ")));
                }
                ddl.extend(indexed.iter().map(|c| format!("CREATE INDEX ON {schema}.{table} ({c})")));
                ddl.push(format!("ANALYZE {schema}.{table}"));
                tx.batch_execute(&ddl.join(";\n")).await.map_err(pg)?;
                report.tables.push((table.to_string(), rows));
            }
            for (view, sql) in GOLD_VIEWS {
                let sql = sql.replace("gold.", &format!("{schema}."));
                tx.batch_execute(&format!("CREATE VIEW {schema}.{view} AS {sql}")).await.map_err(pg)?;
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
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await.map_err(pg)?;
            let rows = self.copy_table(&tx, &format!("features.{table}"), schema, table).await?;
            tx.batch_execute(&format!(
                "DROP TABLE IF EXISTS {schema}.{table} CASCADE;
                 ALTER TABLE {schema}._load_{table} RENAME TO {table};
                 ALTER TABLE {schema}.{table} ADD PRIMARY KEY (user_session, product_id);
                 CREATE INDEX ON {schema}.{table} (event_time);
                 ANALYZE {schema}.{table}"
            ))
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            drop(client);
            let _ = connection.await;
            Ok(rows)
        })
    }

    /// COPYs `source` (a table of ours) into a new `<schema>._load_<table>`; returns the rows.
    async fn copy_table(&self, tx: &Transaction<'_>, source: &str, schema: &str, table: &str) -> Result<u64> {
        let df = self.ctx.table(source).await?;
        let columns = pg_columns(df.schema().as_arrow())?;
        tx.batch_execute(&format!(
            "DROP TABLE IF EXISTS {schema}._load_{table}; CREATE TABLE {schema}._load_{table} ({columns})"
        ))
        .await
        .map_err(pg)?;
        let sink = tx.copy_in(&format!("COPY {schema}._load_{table} FROM STDIN (FORMAT csv)")).await.map_err(pg)?;
        futures::pin_mut!(sink);
        let mut stream = df.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let mut buf = Vec::new();
            datafusion::arrow::csv::WriterBuilder::new().with_header(false).build(&mut buf).write(&batch?)?;
            sink.send(bytes::Bytes::from(buf)).await.map_err(pg)?;
        }
        sink.finish().await.map_err(pg)
    }
}

/// `name type, …` for PostgreSQL, from an Arrow schema.
fn pg_columns(schema: &Schema) -> Result<String> {
    let columns = schema.fields().iter().map(|f| {
        let ty = match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => "integer",
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint",
            DataType::Float32 | DataType::Float64 => "double precision",
            DataType::Boolean => "boolean",
            DataType::Date32 | DataType::Date64 => "date",
            DataType::Timestamp(_, Some(_)) => "timestamptz",
            DataType::Timestamp(_, None) => "timestamp",
            other => {
                return Err(WarehouseError::Invalid(format!("column {}: no PostgreSQL type for {other}", f.name())));
            }
        };
        Ok(format!("{} {ty}{}", f.name(), if f.is_nullable() { "" } else { " NOT NULL" }))
    });
    Ok(columns.collect::<Result<Vec<_>>>()?.join(", "))
}

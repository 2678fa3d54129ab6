//! `cartflow sql`: SQL over the lake and the warehouse, printed as DuckDB's command line does.

use std::io::Write;

use anyhow::Result;
use cartflow_warehouse::Warehouse;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::Ctx;
use crate::cli::{OutputFormat, SqlArgs};

pub fn run(ctx: &Ctx, a: SqlArgs) -> Result<()> {
    let mut cfg = ctx.cfg.clone();
    if let Some(location) = a.lake.location {
        cfg.lake.location = Some(location);
    }
    let warehouse = Warehouse::open(&cfg.lake_location())?;
    let batches = warehouse.sql(&a.query).map_err(|e| {
        let unbuilt = warehouse.state().tables.is_empty() && e.to_string().contains("not found");
        let hint = if unbuilt { " (silver and gold appear after `cartflow warehouse build`)" } else { "" };
        anyhow::anyhow!("{e}{hint}")
    })?;
    let mut out = std::io::stdout().lock();
    match a.format {
        OutputFormat::Csv => write_csv(&batches, &mut out)?,
        OutputFormat::Json => write_json(&batches, &mut out)?,
        OutputFormat::Table => {
            writeln!(out, "{}", pretty_format_batches(&batches)?)?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            writeln!(out, "{rows} row{}", if rows == 1 { "" } else { "s" })?;
        }
    }
    Ok(())
}

fn write_csv(batches: &[RecordBatch], out: &mut impl Write) -> Result<()> {
    let mut w = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(out);
    for b in batches {
        w.write(b)?;
    }
    Ok(())
}

fn write_json(batches: &[RecordBatch], out: &mut impl Write) -> Result<()> {
    let mut w = datafusion::arrow::json::LineDelimitedWriter::new(out);
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    w.write_batches(&refs)?;
    w.finish()?;
    Ok(())
}

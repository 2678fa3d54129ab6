//! `cartflow warehouse build|export`: silver and gold from the lake, and gold into PostgreSQL.

use anyhow::{Context, Result, bail};
use cartflow_warehouse::{BuildOptions, Hour, Warehouse};

use super::{Ctx, time_arg};
use crate::cli::{WarehouseBuildArgs, WarehouseCommand, WarehouseExportArgs};
use crate::telemetry::{progress, thousands};

pub fn run(ctx: &Ctx, command: WarehouseCommand) -> Result<()> {
    match command {
        WarehouseCommand::Build(a) => {
            crate::schedule::run(ctx, "warehouse build", false, &a.schedule, || build(ctx, &a))
        }
        WarehouseCommand::Export(a) => export(ctx, a),
    }
}

fn open(ctx: &Ctx, lake: Option<String>) -> Result<Warehouse> {
    let location = lake.unwrap_or_else(|| ctx.cfg.lake_location());
    Warehouse::open_with_memory(&location, ctx.cfg.warehouse.memory_mb)
        .with_context(|| format!("opening the warehouse over the lake at {location}"))
}

fn build(ctx: &Ctx, a: &WarehouseBuildArgs) -> Result<()> {
    let opts = BuildOptions {
        since: time_arg("--since", a.since.clone(), Hour::parse)?,
        until: time_arg("--until", a.until.clone(), Hour::parse)?,
        skip_damaged: a.skip_damaged,
    };
    let mut warehouse = open(ctx, a.lake.location.as_ref().map(|l| l.to_string()))?;
    let bar = progress(ctx.quiet, None, "warehouse");
    let report = warehouse.build(&opts, &mut |p| {
        bar.set_length(p.days as u64);
        bar.set_position(p.days_done as u64);
        bar.set_message(format!("days, {} silver rows", thousands(p.silver_rows)));
    })?;
    bar.finish_and_clear();
    for (file, why) in &report.files_skipped {
        println!("skipped the damaged lake file {file}: {why}");
    }
    let location = warehouse.location();
    if report.hours_built == 0 && report.gold_tables.is_empty() {
        let what =
            if report.hours_outside_range == 0 { "is up to date" } else { "has nothing to rebuild in that range" };
        println!(
            "warehouse at {location} {what}: {} event hours, {} silver rows",
            report.hours_unchanged,
            thousands(report.silver_rows_total)
        );
    } else {
        println!(
            "silver: rebuilt {} event hours ({} rows), kept {} unchanged; {} rows in all",
            report.hours_built,
            thousands(report.silver_rows_written),
            report.hours_unchanged,
            thousands(report.silver_rows_total)
        );
        let gold: Vec<String> =
            report.gold_tables.iter().map(|(name, rows)| format!("{name} {}", thousands(*rows))).collect();
        if !gold.is_empty() {
            println!("gold: fact_events by hour; {}", gold.join(", "));
        }
        println!("built under {location} in {:.2} s; query with `cartflow sql`", report.seconds);
    }
    if report.hours_outside_range > 0 {
        println!("left {} changed event hours outside --since/--until for a later build", report.hours_outside_range);
    }
    if report.files_deleted > 0 {
        println!("deleted {} files no build names any more", report.files_deleted);
    }
    Ok(())
}

fn export(ctx: &Ctx, a: WarehouseExportArgs) -> Result<()> {
    let Some(url) = a.postgres.or_else(|| ctx.cfg.warehouse.postgres.clone()) else {
        bail!("no PostgreSQL to export to: pass --postgres URL or set warehouse.postgres");
    };
    let schema = a.schema.unwrap_or_else(|| ctx.cfg.warehouse.schema.clone());
    let warehouse = open(ctx, a.lake.location.map(|l| l.to_string()))?;
    let report = warehouse
        .export_postgres(&url, &schema)
        .with_context(|| format!("exporting gold to {}", cartflow_core::redact::url(&url)))?;
    let tables: Vec<String> = report.tables.iter().map(|(name, rows)| format!("{name} {}", thousands(*rows))).collect();
    println!("exported gold to schema {schema}: {}", tables.join(", "));
    println!("with keys, indexes and {} views, in {:.2} s", report.views, report.seconds);
    Ok(())
}

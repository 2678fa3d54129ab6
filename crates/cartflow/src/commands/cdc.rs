//! `cartflow cdc`: a PostgreSQL table's snapshot and changes into the CDC
//! topic; `cartflow cdc seed`: a table of generated events to capture.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use cartflow_cdc::{CdcConfig, CdcStats, run_cdc, seed};

use super::{Ctx, generator_config, per_sec};
use crate::backends::Backends;
use crate::cli::{CdcArgs, CdcCommand, CdcSeedArgs, CdcSource};
use crate::telemetry::{progress, thousands};

pub fn run(ctx: &Ctx, a: CdcArgs) -> Result<()> {
    if let Some(CdcCommand::Seed(s)) = a.command {
        return run_seed(ctx, s);
    }
    ctx.serve_metrics(&a.running)?;
    let mut cfg = source_config(ctx, &a.source)?;
    if let Some(slot) = a.slot {
        cfg.slot = slot;
    }
    let log = ctx.open_when_up("the event log", a.drain, || ctx.cfg.open_log())?;
    let control = ctx.control.with_drain(a.drain);
    let bar = progress(ctx.quiet, None, "cdc");
    let started = Instant::now();
    let runtime = cartflow_lake::runtime().handle();
    let stats = run_cdc(runtime, log.as_ref(), &cfg, &control, &mut |s: &CdcStats| {
        bar.set_position(s.records());
        bar.set_message(format!("slot at {}", s.confirmed_lsn));
        ctx.health.set("cdc", serde_json::to_value(s).unwrap_or_default());
    })
    .with_context(|| format!("capturing {}", cfg.table))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "captured {} records from {} in {secs:.2} s ({} records/s): {} snapshot rows, {} inserts, {} updates, {} deletes",
        thousands(stats.records()),
        cfg.table,
        thousands(per_sec(stats.records(), secs) as u64),
        thousands(stats.snapshot_rows),
        thousands(stats.inserts),
        thousands(stats.updates),
        thousands(stats.deletes),
    );
    println!("  topic {}.{}, slot {} confirmed at {}", cfg.server_name, cfg.table, cfg.slot, stats.confirmed_lsn);
    if stats.skipped > 0 {
        println!("  {} changes skipped: already in the log or in the snapshot", thousands(stats.skipped));
    }
    Ok(())
}

fn source_config(ctx: &Ctx, s: &CdcSource) -> Result<CdcConfig> {
    let mut cfg = ctx.cfg.cdc.clone();
    if let Some(url) = &s.postgres {
        cfg.postgres = url.clone();
    }
    if let Some(table) = &s.table {
        cfg.table = table.clone();
    }
    if cfg.postgres.is_empty() {
        bail!("no PostgreSQL to capture: pass --postgres URL or set cdc.postgres (CARTFLOW_CDC__POSTGRES)");
    }
    Ok(cfg)
}

fn run_seed(ctx: &Ctx, a: CdcSeedArgs) -> Result<()> {
    let cfg = source_config(ctx, &a.source)?;
    let generator = generator_config(&a.generator, a.events, None)?;
    let bar = progress(ctx.quiet, Some(a.events), "seed");
    let started = Instant::now();
    let written = cartflow_lake::runtime().block_on(async {
        let client = cartflow_cdc::table::connect(&cfg.postgres).await?;
        seed::create_table(&client, &cfg.table).await?;
        seed::insert_generated(&client, &cfg.table, generator, a.rate, &mut |n| bar.set_position(n)).await
    })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "inserted {} generated events into {} in {secs:.2} s ({} rows/s)",
        thousands(written),
        cfg.table,
        thousands(per_sec(written, secs) as u64)
    );
    Ok(())
}

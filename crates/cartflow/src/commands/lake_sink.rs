//! `cartflow lake-sink`: validated and invalid events into the lake.

use std::time::Instant;

use anyhow::Result;
use cartflow_stream::lake_sink::run_lake_sink;

use super::Ctx;
use crate::backends::Backends;
use crate::cli::LakeSinkArgs;
use crate::telemetry::{progress, thousands};
use crate::wiring::report;

pub fn run(ctx: &Ctx, a: LakeSinkArgs) -> Result<()> {
    ctx.serve_metrics(&a.running)?;
    let mut cfg = ctx.cfg.clone();
    if let Some(location) = a.lake.location {
        cfg.lake.location = Some(location);
    }
    let log = ctx.open_when_up("the event log", a.drain, || cfg.open_log())?;
    let lake = ctx.open_when_up("the lake", a.drain, || cfg.open_lake())?;
    let control = ctx.control.with_drain(a.drain);
    let bar = progress(ctx.quiet, None, "lake");
    let started = Instant::now();
    let stats = run_lake_sink(log.as_ref(), &lake, &cfg.lake_sink, &control, &mut |s| {
        bar.set_position(s.read);
        bar.set_message(format!("{} files, lag {}", s.files, thousands(s.lag)));
        ctx.health.set("lake-sink", serde_json::to_value(s).unwrap_or_default());
    })?;
    bar.finish_and_clear();
    report::landed(&stats, lake.location(), started.elapsed().as_secs_f64(), "");
    Ok(())
}

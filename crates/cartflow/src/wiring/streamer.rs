//! The feature streamer as commands run it (with a bar and `/health`), on
//! this thread or beside a server, and the warehouse over the configured lake.

use std::sync::Arc;

use anyhow::{Context, Result};
use cartflow_online::OnlineStore;
use cartflow_stream::StageControl;
use cartflow_stream::feature_streamer::{StreamerStats, run_feature_streamer};
use cartflow_warehouse::Warehouse;

use crate::backends::Backends;
use crate::commands::Ctx;
use crate::telemetry::{progress, thousands};

/// Streams validated events into `store` until `control` stops (or drains).
pub fn run(ctx: &Ctx, store: &dyn OnlineStore, control: &StageControl) -> Result<StreamerStats> {
    let log = ctx.open_when_up("the event log", control.draining(), || ctx.cfg.open_log())?;
    let bar = progress(ctx.quiet, None, "features");
    let stats = run_feature_streamer(log.as_ref(), store, &ctx.cfg.features.streamer, control, &mut |s| {
        bar.set_position(s.read);
        bar.set_message(format!("{} duplicates, lag {}", thousands(s.duplicates), thousands(s.lag)));
        ctx.health.set("features", serde_json::to_value(s).unwrap_or_default());
    })?;
    bar.finish_and_clear();
    Ok(stats)
}

/// Streams on a thread of its own until `control` stops; a failure stops
/// `control` too, so the server beside it ends.
pub fn spawn(
    ctx: &Ctx,
    store: Arc<dyn OnlineStore>,
    control: &StageControl,
) -> std::thread::JoinHandle<Result<StreamerStats>> {
    let control = control.clone();
    let ctx =
        Ctx { cfg: ctx.cfg.clone(), quiet: true, control: control.clone(), health: ctx.health.clone(), traces: None };
    std::thread::spawn(move || {
        let result = run(&ctx, store.as_ref(), &control);
        if let Err(e) = &result {
            tracing::error!("feature streamer stopped: {e:#}");
            control.stop();
        }
        result
    })
}

/// The warehouse over `lake` (else the configured lake) with the configured memory.
pub fn open_warehouse(ctx: &Ctx, lake: Option<String>) -> Result<Warehouse> {
    let location = lake.unwrap_or_else(|| ctx.cfg.lake_location());
    Warehouse::open_with_memory(&location, ctx.cfg.warehouse.memory_mb)
        .with_context(|| format!("opening the warehouse over the lake at {location}"))
}

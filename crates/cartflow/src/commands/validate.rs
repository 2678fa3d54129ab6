//! `cartflow validate`: the validator stage, until Ctrl-C or, with `--drain`, caught up.

use std::time::Instant;

use anyhow::Result;
use cartflow_stream::validator::run_validator;

use super::Ctx;
use crate::backends::Backends;
use crate::cli::ValidateArgs;
use crate::telemetry::{progress, thousands};
use crate::wiring::report;

pub fn run(ctx: &Ctx, a: ValidateArgs) -> Result<()> {
    ctx.serve_metrics(&a.running)?;
    let log = ctx.open_when_up("the event log", a.drain, || ctx.cfg.open_log())?;
    let mut cfg = ctx.cfg.validator.clone();
    if let Some(g) = a.group {
        cfg.group = g;
    }
    let control = ctx.control.with_drain(a.drain);
    let bar = progress(ctx.quiet, None, "validate");
    let started = Instant::now();
    let stats = run_validator(log.as_ref(), &cfg, Some(ctx.cfg.alerts.clone()), &control, &mut |s| {
        bar.set_position(s.read);
        bar.set_message(format!("{} invalid, lag {}", thousands(s.invalid), thousands(s.lag)));
        ctx.health.set("validate", serde_json::to_value(s).unwrap_or_default());
    })?;
    bar.finish_and_clear();
    report::validated(&stats, started.elapsed().as_secs_f64());
    Ok(())
}

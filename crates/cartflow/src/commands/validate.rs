//! `cartflow validate`: the validator stage, until Ctrl-C or, with `--drain`, caught up.

use std::time::Instant;

use anyhow::Result;
use cartflow_stream::topics::{INVALID, VALIDATED};
use cartflow_stream::validator::{ValidatorStats, run_validator};

use super::{Ctx, per_sec};
use crate::cli::ValidateArgs;
use crate::telemetry::{progress, thousands};

pub fn run(ctx: &Ctx, a: ValidateArgs) -> Result<()> {
    ctx.serve_metrics(&a.running)?;
    let log = ctx.cfg.open_log()?;
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
    print_summary(&stats, started.elapsed().as_secs_f64());
    Ok(())
}

pub fn print_summary(s: &ValidatorStats, secs: f64) {
    let out = s.valid + s.invalid;
    println!(
        "validated {} records in {secs:.2} s ({} records/s): {} to {VALIDATED}, {} to {INVALID} ({:.2}%)",
        thousands(s.read),
        thousands(per_sec(s.read, secs) as u64),
        thousands(s.valid),
        thousands(s.invalid),
        100.0 * s.invalid as f64 / out.max(1) as f64
    );
    print_details(s, "  ");
}

/// The lines under a validator summary: reasons, replays, tombstones.
pub fn print_details(s: &ValidatorStats, indent: &str) {
    if !s.by_reason.is_empty() {
        let reasons: Vec<String> = s.by_reason.iter().map(|(r, n)| format!("{r} {}", thousands(*n))).collect();
        println!("{indent}invalid by reason: {}", reasons.join(", "));
    }
    if s.replayed_skipped > 0 {
        println!(
            "{indent}{} replayed records skipped: their output was already durable",
            thousands(s.replayed_skipped)
        );
    }
    if s.tombstones > 0 {
        println!("{indent}{} tombstones (empty values) passed over", thousands(s.tombstones));
    }
}

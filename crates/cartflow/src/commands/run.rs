//! `cartflow run`: the pipeline in one process on the embedded backends.
//!
//! Today it runs the stages that exist: events (generated, or `--input`
//! files) → `tracking.raw_user_behavior` → validator → validated / invalid,
//! concurrently, then prints a summary. The lake, features, training and
//! serving join it as they land.

use std::time::Instant;

use anyhow::Result;
use cartflow_log::EventLog;
use cartflow_stream::StageControl;
use cartflow_stream::produce::{ProduceConfig, ProduceStats, Source, run_produce};
use cartflow_stream::validator::{ValidatorConfig, ValidatorStats, run_validator};
use serde_json::json;

use super::{Ctx, generator_config, per_sec};
use crate::cli::RunArgs;
use crate::telemetry::{progress, thousands};

pub struct PipelineRun {
    pub produced: ProduceStats,
    pub validated: ValidatorStats,
    pub produce_secs: f64,
    pub total_secs: f64,
}

/// Produces and validates concurrently; returns when the validator has caught
/// up with everything produced (or on Ctrl-C).
pub fn produce_and_validate(
    ctx: &Ctx,
    log: &dyn EventLog,
    source: Source,
    total: Option<u64>,
    produce: &ProduceConfig,
    validator: &ValidatorConfig,
) -> Result<PipelineRun> {
    let started = Instant::now();
    let control: StageControl = ctx.control.with_drain(false);
    let bar_in = progress(ctx.quiet, total, "produce");
    let bar_out = progress(ctx.quiet, total, "validate");
    let (produced, validated) = std::thread::scope(|s| {
        let validator_thread = s.spawn(|| {
            run_validator(log, validator, Some(ctx.cfg.alerts.clone()), &control, &mut |st| {
                bar_out.set_position(st.read);
                ctx.health.set("validate", serde_json::to_value(st).unwrap_or_default());
            })
        });
        let produced = run_produce(log, source, produce, &control, &mut |st| {
            bar_in.set_position(st.records);
            ctx.health.set("produce", json!({ "records": st.records }));
        })
        .map(|p| (p, started.elapsed().as_secs_f64()));
        // Whatever happened upstream, let the validator finish what is there.
        control.start_draining();
        let validated = validator_thread.join().expect("validator thread");
        (produced, validated)
    });
    bar_in.finish_and_clear();
    bar_out.finish_and_clear();
    let (produced, produce_secs) = produced?;
    Ok(PipelineRun { produced, validated: validated?, produce_secs, total_secs: started.elapsed().as_secs_f64() })
}

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<()> {
    ctx.serve_metrics(&a.running)?;
    let log = ctx.cfg.open_log()?;
    let (source, total, what) = if a.input.is_empty() {
        let g = generator_config(&a.generator, a.events)?;
        (
            Source::Generated(g),
            Some(a.events),
            format!("{} generated events (seed {})", thousands(a.events), a.generator.seed),
        )
    } else {
        (Source::Files(a.input.clone()), None, format!("{} file(s)", a.input.len()))
    };
    println!("cartflow run: {what} through the embedded pipeline in {}", ctx.cfg.data_dir.display());
    let produce =
        ProduceConfig { inject_invalid: a.inject_invalid, seed: a.generator.seed, ..ProduceConfig::default() };
    let r = produce_and_validate(ctx, log.as_ref(), source, total, &produce, &ctx.cfg.validator)?;
    let v = &r.validated;
    println!(
        "  produce   {} events → tracking.raw_user_behavior in {:.2} s ({} events/s)",
        thousands(r.produced.records),
        r.produce_secs,
        thousands(per_sec(r.produced.records, r.produce_secs) as u64)
    );
    println!(
        "  validate  {} valid, {} invalid ({:.2}%), end to end {:.2} s ({} events/s)",
        thousands(v.valid),
        thousands(v.invalid),
        100.0 * v.invalid as f64 / (v.valid + v.invalid).max(1) as f64,
        r.total_secs,
        thousands(per_sec(v.read, r.total_secs) as u64)
    );
    super::validate::print_details(v, "            ");
    println!("  next: `cartflow topics`, `cartflow tail tracking.user_behavior.validated -n 3`");
    println!("  (the lake, features, training and serving stages are not in this build yet)");
    Ok(())
}

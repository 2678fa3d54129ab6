//! `cartflow produce`: CSV files or generated events into the raw topic.

use std::time::Instant;

use anyhow::Result;
use cartflow_stream::produce::{ProduceConfig, Source, run_produce};
use serde_json::json;

use super::{Ctx, generator_config, per_sec};
use crate::backends::Backends;
use crate::cli::ProduceArgs;
use crate::telemetry::{progress, thousands};

pub fn run(ctx: &Ctx, a: ProduceArgs) -> Result<()> {
    ctx.serve_metrics(&a.running)?;
    let log = ctx.cfg.open_log()?;
    let (source, total) = match a.generate {
        Some(n) => (Source::Generated(generator_config(&a.generator, n, a.rate)?), Some(n)),
        None => (Source::Files(a.input.clone()), None),
    };
    let cfg = ProduceConfig {
        rate: a.rate,
        at_event_time: a.generate.is_some() && a.generator.start == "now",
        inject_invalid: a.inject_invalid,
        seed: a.generator.seed,
        ..ProduceConfig::default()
    };
    let bar = progress(ctx.quiet, total, "produce");
    let started = Instant::now();
    let stats = run_produce(log.as_ref(), source, &cfg, &ctx.control, &mut |s| {
        bar.set_position(s.records);
        ctx.health.set("produce", json!({ "records": s.records }));
    })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced {} events to {} in {secs:.2} s ({} events/s)",
        thousands(stats.records),
        cfg.topic,
        thousands(per_sec(stats.records, secs) as u64)
    );
    if stats.broken_rows > 0 {
        println!("  {} broken CSV rows sent on for the validator to reject", stats.broken_rows);
    }
    if stats.injected_invalid > 0 {
        println!(
            "  {} events damaged on purpose (--inject-invalid {})",
            thousands(stats.injected_invalid),
            a.inject_invalid
        );
    }
    Ok(())
}

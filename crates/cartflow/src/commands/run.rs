//! `cartflow run`: the whole system in one process on the embedded backends.
//!
//! It starts the server first (predictions, features, registry, dashboard,
//! metrics on one address; the feature streamer filling the online store),
//! so the dashboard shows the pipeline as it runs: events (generated, or
//! `--input` files) → `tracking.raw_user_behavior` → validator → validated /
//! invalid → lake, concurrently; then the warehouse build, the training set,
//! and a short tuning run registered in the embedded registry, whose
//! champion the server loads at once. Then it prints a summary and serves
//! until Ctrl-C (or exits, with `--once`).

use anyhow::Result;
use cartflow_stream::produce::{ProduceConfig, Source};
use cartflow_stream::topology::{Pipeline, PipelineRun, Progress, run_pipeline};
use serde_json::json;

use super::{Ctx, generator_config, per_sec};
use crate::backends::Backends;
use crate::cli::{RunArgs, TrainArgs};
use crate::telemetry::{progress, thousands};
use crate::wiring::server::{ServeOptions, print_started, start};
use crate::wiring::{report, training};

/// Runs the pipeline topology with a bar per stage and each stage's
/// figures on `/health`.
pub fn pipeline(ctx: &Ctx, p: Pipeline<'_>, total: Option<u64>) -> Result<PipelineRun> {
    let bars = [
        progress(ctx.quiet, total, "produce"),
        progress(ctx.quiet, total, "validate"),
        progress(ctx.quiet, total, "lake"),
    ];
    let run = run_pipeline(p, &ctx.control, &|progress| match progress {
        Progress::Produce(st) => {
            bars[0].set_position(st.records);
            ctx.health.set("produce", json!({ "records": st.records }));
        }
        Progress::Validate(st) => {
            bars[1].set_position(st.read);
            ctx.health.set("validate", serde_json::to_value(st).unwrap_or_default());
        }
        Progress::Lake(st) => {
            bars[2].set_position(st.read);
            ctx.health.set("lake-sink", serde_json::to_value(st).unwrap_or_default());
        }
    });
    for bar in bars {
        bar.finish_and_clear();
    }
    Ok(run?)
}

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<()> {
    ctx.serve_metrics(&a.running)?;
    let log = ctx.cfg.open_log()?;
    let lake = ctx.cfg.open_lake()?;
    let (source, total, what) = if a.input.is_empty() {
        let g = generator_config(&a.generator, a.events, a.rate)?;
        (
            Source::Generated(g),
            Some(a.events),
            format!("{} generated events (seed {})", thousands(a.events), a.generator.seed),
        )
    } else {
        (Source::Files(a.input.clone()), None, format!("{} file(s)", a.input.len()))
    };
    println!("cartflow run: {what} through the embedded pipeline in {}", ctx.cfg.data_dir.display());
    let server =
        if a.once { None } else { Some(start(ctx, ServeOptions { addr: a.addr.clone(), ..Default::default() })?) };
    if let Some(s) = &server {
        let token = s.admin.as_ref().map_or(String::new(), |a| format!("?token={}", a.for_shell()));
        println!("  dashboard {}/dashboard{token} (live while the pipeline runs)", s.url());
    }
    let produce = ProduceConfig {
        inject_invalid: a.inject_invalid,
        seed: a.generator.seed,
        rate: a.rate,
        at_event_time: a.input.is_empty() && a.generator.start == "now",
        ..ProduceConfig::default()
    };
    let topology = Pipeline {
        log: log.as_ref(),
        source,
        produce: &produce,
        validator: &ctx.cfg.validator,
        alerts: Some(ctx.cfg.alerts.clone()),
        lake: Some((&lake, &ctx.cfg.lake_sink)),
    };
    let r = pipeline(ctx, topology, total)?;
    let v = &r.validated;
    println!(
        "  produce   {} events → tracking.raw_user_behavior in {:.2} s ({} events/s)",
        thousands(r.produced.records),
        r.produce_secs,
        thousands(per_sec(r.produced.records, r.produce_secs) as u64)
    );
    println!(
        "  validate  {} valid, {} invalid ({:.2}%) in {:.2} s ({} events/s)",
        thousands(v.valid),
        thousands(v.invalid),
        100.0 * v.invalid as f64 / (v.valid + v.invalid).max(1) as f64,
        r.validate_secs,
        thousands(per_sec(v.read, r.validate_secs) as u64)
    );
    report::validator_details(v, "            ");
    if let Some(l) = &r.landed {
        report::landed(l, lake.location(), r.total_secs, "  lake      ");
    }
    if !ctx.control.stopped() {
        let mut warehouse = cartflow_warehouse::Warehouse::open(lake.location())?;
        let w = warehouse.build(&cartflow_warehouse::BuildOptions::default(), &mut |_| {})?;
        let gold: Vec<String> = w.gold_tables.iter().map(|(t, n)| format!("{t} {}", thousands(*n))).collect();
        println!(
            "  warehouse {} silver rows in {} event hours; gold: {} in {:.2} s",
            thousands(w.silver_rows_total),
            w.hours_built + w.hours_unchanged,
            if gold.is_empty() { "unchanged".to_owned() } else { gold.join(", ") },
            w.seconds
        );
        let options = cartflow_warehouse::TrainingOptions { until: None, session_ttl: ctx.cfg.features.session_ttl() };
        let t = warehouse.build_training_set(&options)?;
        println!(
            "  features  {} training rows (first carts), {:.1}% bought, in {:.2} s",
            thousands(t.rows),
            100.0 * t.positives as f64 / t.rows.max(1) as f64,
            t.seconds
        );
        if let Err(e) = train(ctx) {
            // The pipeline's data stays usable; say why there is no model.
            println!("  train     no model: {e:#}");
        }
    }
    let Some(server) = server else {
        println!("  next: `cartflow serve` (predictions, features, dashboard and registry on one address),");
        println!(
            "        `cartflow sql \"SELECT * FROM gold.vw_category_performance ORDER BY purchases DESC LIMIT 5\"`"
        );
        return Ok(());
    };
    if let Err(e) = server.server.refresh_model() {
        println!("  serve     could not load the champion yet ({e:#}); retrying every {} s", ctx.cfg.serve.poll_secs);
    }
    print_started(&server, "  ");
    let auth =
        server.admin.as_ref().map_or(String::new(), |a| format!("-H \"Authorization: Bearer {}\" ", a.for_shell()));
    println!("  try: curl {auth}-H 'content-type: application/json' {}/predict \\", server.url());
    println!("         -d '[{{\"user_id\": 1, \"product_id\": 2, \"user_session\": \"s\", \"price\": 35.5}}]'");
    println!("  serving until Ctrl-C");
    server.wait_and_report()
}

/// Trials of `run`'s short tuning budget, and the time after which no new one starts.
const RUN_TRIALS: usize = 8;
const RUN_TUNING_SECS: u64 = 60;

/// A short tuning run into the embedded registry.
fn train(ctx: &Ctx) -> Result<()> {
    let quiet = Ctx {
        cfg: ctx.cfg.clone(),
        quiet: true,
        control: ctx.control.clone(),
        health: ctx.health.clone(),
        traces: None,
    };
    let args = TrainArgs {
        features: None,
        trials: Some(ctx.cfg.train.trials.min(RUN_TRIALS)),
        parallel: None,
        timeout: Some(RUN_TUNING_SECS),
        registry: Some(cartflow_registry::RegistryLocation::Embedded),
        seed: None,
        study: None,
        study_storage: None,
        study_stale_secs: 60,
        schedule: Default::default(),
    };
    let t = training::train(&quiet, args)?;
    let o = &t.outcome;
    let logistic = o.baseline("logistic_regression").map_or(f64::NAN, |m| m.roc_auc);
    println!(
        "  train     validation ROC AUC {:.4} (logistic regression {logistic:.4}, base rate 0.5) on {} carts; {} trials in {:.1} s",
        o.metrics.roc_auc,
        thousands(o.split.valid_rows as u64),
        o.trials.len(),
        o.seconds
    );
    if let Some(r) = &t.registered {
        println!("  registry  {} v{} is {}", ctx.cfg.registry.model_name, r.version, r.alias);
    }
    Ok(())
}

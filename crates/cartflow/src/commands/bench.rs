//! `cartflow bench`: throughput figures a person can compare.

use std::time::Instant;

use anyhow::Result;
use cartflow_sources::json::event_json;
use cartflow_sources::{Generator, GeneratorConfig};
use cartflow_stream::produce::{ProduceConfig, Source};
use cartflow_stream::validator::{Outcome, ValidatorConfig, check_record};
use serde_json::json;

use super::run::pipeline as run_pipeline;
use super::{Ctx, per_sec};
use crate::cli::BenchCommand;
use crate::config::Config;
use crate::telemetry::thousands;

pub fn run(ctx: &Ctx, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Validate { events, json } => validate(events, json),
        BenchCommand::Pipeline { events, json, lake } => pipeline(ctx, events, json, lake),
        BenchCommand::Features { events, redis, json } => features(ctx, events, redis, json),
    }
}

/// Parse + validate + normalize on one core, over generated raw JSON in memory.
fn validate(events: u64, as_json: bool) -> Result<()> {
    let inputs: Vec<Vec<u8>> = Generator::new(GeneratorConfig { events, ..GeneratorConfig::default() })
        .map(|e| {
            let mut v = Vec::with_capacity(256);
            event_json(&e, &mut v);
            v
        })
        .collect();
    let bytes: usize = inputs.iter().map(Vec::len).sum();
    let rules = ValidatorConfig::default().rules(std::time::SystemTime::now())?;
    let started = Instant::now();
    let mut out_bytes = 0usize;
    for v in &inputs {
        if let Outcome::Valid(e, _) = check_record(v, false, &rules) {
            out_bytes += e.to_json().len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(out_bytes);
    let rate = per_sec(events, secs);
    if as_json {
        println!("{}", json!({ "validate_events_per_sec": rate, "validate_bytes_per_sec": bytes as f64 / secs }));
    } else {
        println!(
            "parse + validate + normalize: {} events in {secs:.3} s on one core: {} events/s ({:.0} MB/s of JSON in)",
            thousands(events),
            thousands(rate as u64),
            bytes as f64 / 1e6 / secs
        );
    }
    Ok(())
}

/// CSV → log → validator in a temporary data directory.
fn pipeline(ctx: &Ctx, events: u64, as_json: bool, with_lake: bool) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("cartflow-bench-").tempdir()?;
    let csv = dir.path().join("events.csv");
    let mut text = String::from(cartflow_core::CSV_HEADER);
    text.push('\n');
    for e in Generator::new(GeneratorConfig { events, ..GeneratorConfig::default() }) {
        e.write_csv(&mut text);
        text.push('\n');
    }
    std::fs::write(&csv, text)?;
    let cfg = Config { data_dir: dir.path().join("data"), ..ctx.cfg.clone() };
    let bench_ctx = Ctx { cfg, quiet: true, control: ctx.control.clone(), health: ctx.health.clone() };
    let log = bench_ctx.cfg.open_log()?;
    let validator = ValidatorConfig { group: "bench".into(), ..bench_ctx.cfg.validator.clone() };
    let lake = if with_lake { Some(bench_ctx.cfg.open_lake()?) } else { None };
    let source = Source::Files(vec![csv]);
    let r = run_pipeline(&bench_ctx, log.as_ref(), source, None, &ProduceConfig::default(), &validator, lake.as_ref())?;
    let e2e = per_sec(r.validated.read, r.total_secs);
    let produce = per_sec(r.produced.records, r.produce_secs);
    let stages = if with_lake { "CSV → log → validator → lake" } else { "CSV → log → validator" };
    if as_json {
        println!(
            "{}",
            json!({ "produce_events_per_sec": produce, "end_to_end_events_per_sec": e2e,
                    "stages": stages, "fsync": bench_ctx.cfg.embedded_log.fsync })
        );
    } else {
        println!(
            "{stages}: {} events in {:.2} s: {} events/s end to end (producer alone {} events/s; fsync {})",
            thousands(r.validated.read),
            r.total_secs,
            thousands(e2e as u64),
            thousands(produce as u64),
            bench_ctx.cfg.embedded_log.fsync
        );
    }
    Ok(())
}

/// Validated events written straight into a temporary log, then the real
/// streamer (read, parse, apply, store) until caught up, per store.
fn features(ctx: &Ctx, events: u64, redis: Option<String>, as_json: bool) -> Result<()> {
    use cartflow_online::{MemoryStore, OnlineStore, RedisStore};
    use cartflow_stream::StageControl;
    use cartflow_stream::feature_streamer::{StreamerConfig, run_feature_streamer};
    use cartflow_stream::topics::VALIDATED;

    let dir = tempfile::Builder::new().prefix("cartflow-bench-").tempdir()?;
    let cfg = Config { data_dir: dir.path().join("data"), ..ctx.cfg.clone() };
    let log = cfg.open_log()?;
    log.ensure_topic(VALIDATED, cfg.embedded_log.partitions)?;
    let mut producer = log.producer()?;
    for e in Generator::new(GeneratorConfig { events, ..GeneratorConfig::default() }) {
        let key = e.user_session.clone().unwrap_or_default();
        producer.send(cartflow_log::ProducerRecord::new(VALIDATED, Some(key.as_bytes()), &e.to_json()))?;
    }
    producer.flush()?;

    let ttl = cfg.features.session_ttl();
    let mut stores: Vec<(&str, Box<dyn OnlineStore>)> = vec![("embedded", Box::new(MemoryStore::new(ttl)))];
    let prefix = format!("cartflow-bench-{}", std::process::id());
    if let Some(url) = &redis {
        stores.push(("redis", Box::new(RedisStore::open(url, &prefix, ttl)?)));
    }
    let mut results = serde_json::Map::new();
    for (i, (name, store)) in stores.iter().enumerate() {
        let streamer = StreamerConfig { group: format!("bench-{i}"), ..cfg.features.streamer.clone() };
        let started = Instant::now();
        let stats =
            run_feature_streamer(log.as_ref(), store.as_ref(), &streamer, &StageControl::new(true), &mut |_| {})?;
        let secs = started.elapsed().as_secs_f64();
        let rate = per_sec(stats.read, secs);
        if !as_json {
            println!(
                "feature streamer, {name} store: {} events in {secs:.2} s: {} events/s (log read, JSON parse, state, store)",
                thousands(stats.read),
                thousands(rate as u64)
            );
        }
        results.insert(format!("{name}_events_per_sec"), json!(rate));
        if *name == "redis" {
            // Leave the server as we found it.
            store.replace(cartflow_features::Entities::new(ttl), &[])?;
        }
    }
    if as_json {
        println!("{}", serde_json::Value::Object(results));
    }
    Ok(())
}

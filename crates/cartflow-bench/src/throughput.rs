//! Throughput of the validator's rules, the pipeline, the feature streamer
//! and the booster; `serve` is in [`crate::serve`].

use std::time::Instant;

use anyhow::Result;
use cartflow_sources::json::event_json;
use cartflow_sources::{Generator, GeneratorConfig};
use cartflow_stream::produce::{ProduceConfig, Source};
use cartflow_stream::validator::{Outcome, ValidatorConfig, check_record};
use serde_json::json;

use cartflow::backends::Backends;
use cartflow::commands::{Ctx, per_sec};
use cartflow::config::Config;
use cartflow::telemetry::thousands;
use cartflow_stream::topology::{Pipeline, run_pipeline};

use crate::Command;

pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Validate { events, json } => validate(events, json),
        Command::Pipeline { events, json, lake } => pipeline(ctx, events, json, lake),
        Command::Features { events, redis, json } => features(ctx, events, redis, json),
        Command::Boosters { events, rounds, out, json } => boosters(events, rounds, out.as_deref(), json),
        Command::Serve { seconds, connections, redis, python, peer_script, json } => {
            crate::serve::run(ctx, crate::serve::ServeBench { seconds, connections, redis, python, peer_script, json })
        }
        Command::Load { url, seconds, connections, rate, report_every, json } => {
            let args = crate::serve::LoadArgs { seconds, connections, rate, report_every, json };
            crate::serve::load_url(ctx, &url, &args)
        }
    }
}

/// Writes encoded rows as CSV: inputs by name, then `label`; missing is empty.
fn write_csv(path: &std::path::Path, names: &[String], data: &cartflow_train::encode::Encoded) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "{},label", names.join(","))?;
    for r in 0..data.rows {
        for c in 0..data.cols {
            let v = data.column_major[c * data.rows + r];
            if !v.is_nan() {
                write!(w, "{v}")?;
            }
            w.write_all(b",")?;
        }
        writeln!(w, "{}", data.labels[r])?;
    }
    Ok(w.flush()?)
}

fn boosters(events: u64, rounds: usize, out: Option<&std::path::Path>, as_json: bool) -> Result<()> {
    use cartflow_features::{DEFAULT_SESSION_TTL, FeatureSet, TrainingSetBuilder};
    use cartflow_train::encode::{Encoded, fit_inputs};

    let started = Instant::now();
    let mut builder = TrainingSetBuilder::new(DEFAULT_SESSION_TTL);
    Generator::new(GeneratorConfig { events, ..GeneratorConfig::default() }).for_each(|e| builder.push(e));
    let (rows, _) = builder.finish();
    let batches: Vec<_> = rows.chunks(65_536).map(cartflow_warehouse::training::training_batch).collect();
    let frame = cartflow_train::Frame::from_batches(&batches)?;
    let split = frame.time_split(cartflow_train::TRAIN_SHARE)?;
    let inputs = fit_inputs(&frame, FeatureSet::V2, &split.train);
    let train = Encoded::new(&frame, &inputs, &split.train)?;
    let valid = Encoded::new(&frame, &inputs, &split.valid)?;
    let prepare_secs = started.elapsed().as_secs_f64();
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)?;
        let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
        write_csv(&dir.join("train.csv"), &names, &train)?;
        write_csv(&dir.join("valid.csv"), &names, &valid)?;
    }

    let params =
        cartflow_train::Params { rounds, max_depth: 6, learning_rate: 0.1, ..cartflow_train::Params::default() };
    let cores = cartflow_train::cores();
    let started = Instant::now();
    let fitted = cartflow_train::booster::fit_fixed(&params, &train, &valid, cores)?;
    let train_secs = started.elapsed().as_secs_f64();
    let p = fitted.ensemble.predict_batch(&valid.row_major(), valid.cols);
    let auc = cartflow_train::metrics::roc_auc(&p, &valid.labels);
    let log_loss = cartflow_train::metrics::log_loss(&p, &valid.labels);

    // Inference on one core with 100 trees, batch: at least a million rows.
    let mut hundred = fitted.ensemble.clone();
    let keep = hundred.roots.len().min(100);
    hundred.roots.truncate(keep);
    let rows = valid.row_major();
    let repeat = (1_000_000 / valid.rows.max(1)).max(1);
    let started = Instant::now();
    let mut scored = 0usize;
    for _ in 0..repeat {
        scored += std::hint::black_box(hundred.predict_batch(&rows, valid.cols)).len();
    }
    let infer_per_sec = scored as f64 / started.elapsed().as_secs_f64();

    if as_json {
        println!(
            "{}",
            json!({
                "events": events, "train_rows": train.rows, "valid_rows": valid.rows, "rounds": rounds,
                "prepare_secs": prepare_secs, "forust_train_secs": train_secs, "forust_valid_auc": auc,
                "forust_valid_log_loss": log_loss, "inference_rows_per_sec_one_core": infer_per_sec, "inference_trees": keep,
            })
        );
        return Ok(());
    }
    println!(
        "training set: {} events → {} train rows, {} validation rows ({:.1}% / {:.1}% bought) in {prepare_secs:.1} s",
        thousands(events),
        thousands(train.rows as u64),
        thousands(valid.rows as u64),
        100.0 * train.base_rate(),
        100.0 * valid.base_rate()
    );
    println!(
        "forust, {rounds} trees, depth 6, lr 0.1, {cores} threads: {train_secs:.2} s, validation AUC {auc:.4}, log loss {log_loss:.4}"
    );
    println!("inference, {keep} trees, batch, one core: {} rows/s", thousands(infer_per_sec as u64));
    Ok(())
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
    let log = cfg.open_log()?;
    let validator = ValidatorConfig { group: "bench".into(), ..cfg.validator.clone() };
    let lake = if with_lake { Some(cfg.open_lake()?) } else { None };
    let topology = Pipeline {
        log: log.as_ref(),
        source: Source::Files(vec![csv]),
        produce: &ProduceConfig::default(),
        validator: &validator,
        alerts: Some(cfg.alerts.clone()),
        lake: lake.as_ref().map(|lake| (lake, &cfg.lake_sink)),
    };
    let r = run_pipeline(topology, &ctx.control, &|_| {})?;
    let e2e = per_sec(r.validated.read, r.total_secs);
    let produce = per_sec(r.produced.records, r.produce_secs);
    let stages = if with_lake { "CSV → log → validator → lake" } else { "CSV → log → validator" };
    let backend = match &cfg.log {
        cartflow_log::LogBackend::Embedded => format!("embedded log, fsync {}", cfg.embedded_log.fsync),
        kafka => kafka.to_string(),
    };
    if as_json {
        println!(
            "{}",
            json!({ "produce_events_per_sec": produce, "end_to_end_events_per_sec": e2e,
                    "stages": stages, "log": backend })
        );
    } else {
        println!(
            "{stages}: {} events in {:.2} s: {} events/s end to end (producer alone {} events/s; {backend})",
            thousands(r.validated.read),
            r.total_secs,
            thousands(e2e as u64),
            thousands(produce as u64),
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
            store.delete()?;
        }
    }
    if as_json {
        println!("{}", serde_json::Value::Object(results));
    }
    Ok(())
}

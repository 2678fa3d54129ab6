//! `cartflow features list|stream|build|materialize|serve`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cartflow_features::FEATURES;
use cartflow_log::CommittedOffset;
use cartflow_online::{Change, OnlineStore};
use cartflow_stream::feature_streamer::StreamerStats;
use cartflow_stream::topics::VALIDATED;
use cartflow_warehouse::{TrainingOptions, Warehouse};

use super::{Ctx, per_sec, time_arg};
use crate::backends::Backends;
use crate::cli::{
    FeastRepoArgs, FeaturesBuildArgs, FeaturesCommand, FeaturesMaterializeArgs, FeaturesServeArgs, FeaturesStreamArgs,
};
use crate::telemetry::{self, progress, thousands};
use crate::wiring::{listen, streamer};

pub fn run(ctx: &Ctx, command: FeaturesCommand) -> Result<()> {
    match command {
        FeaturesCommand::List { json } => list(json),
        FeaturesCommand::Stream(a) => stream(ctx, a),
        FeaturesCommand::Build(a) => crate::schedule::run(ctx, "features build", false, &a.schedule, || build(ctx, &a)),
        FeaturesCommand::Materialize(a) => materialize(ctx, a),
        FeaturesCommand::Serve(a) => serve(ctx, a),
        FeaturesCommand::FeastRepo(a) => feast_repo(ctx, a),
    }
}

fn feast_repo(ctx: &Ctx, a: FeastRepoArgs) -> Result<()> {
    use cartflow_features::feast;
    let url = a.url.unwrap_or_else(|| format!("http://{}", ctx.cfg.features.addr));
    let lake = a.lake.location.map_or_else(|| ctx.cfg.lake_location(), |l| l.to_string());
    let source = format!("{}/features/{}", lake.trim_end_matches('/'), cartflow_warehouse::training::TRAINING_TABLE);
    std::fs::create_dir_all(a.out.join("data")).with_context(|| format!("creating {}", a.out.display()))?;
    for (name, text) in [
        ("feature_store.yaml", feast::feature_store_yaml(&url)),
        ("cartflow_repo.py", feast::repo_py(&source, ctx.cfg.features.session_ttl_secs)),
    ] {
        let path = a.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "a Feast repository in {}: 4 feature views, services cart_v1 and cart_v2, online store {url}",
        a.out.display()
    );
    println!("next: cd {} && feast apply; then FEAST_OIDC_TOKEN=<a features:read token> and", a.out.display());
    println!(
        "      FeatureStore(repo_path=\".\").get_online_features(features=[\"session_activity:activity_count\"], entity_rows=[…])"
    );
    Ok(())
}

fn list(json: bool) -> Result<()> {
    if json {
        let all: Vec<_> = FEATURES
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name, "type": f.dtype, "set": f.set, "view": f.view, "description": f.description,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!("{:<27} {:<8} {:<4} {:<17} meaning", "feature", "type", "set", "view");
    for f in &FEATURES {
        let ty = serde_json::to_value(f.dtype)?.as_str().unwrap_or_default().to_lowercase();
        let set = serde_json::to_value(f.set)?.as_str().unwrap_or_default().to_owned();
        println!("{:<27} {:<8} {:<4} {:<17} {}", f.name, ty, set, f.view, f.description);
    }
    println!(
        "\nv1: the reference design's six, point-in-time; v2: all {}. Feature services cart_v1 and cart_v2.",
        FEATURES.len()
    );
    Ok(())
}

fn stream(ctx: &Ctx, a: FeaturesStreamArgs) -> Result<()> {
    ctx.serve_metrics(&a.running)?;
    let store = ctx.open_when_up("the online store", a.drain, || ctx.cfg.open_online(a.online.online.as_ref()))?;
    let started = Instant::now();
    let stats = streamer::run(ctx, store.as_ref(), &ctx.control.with_drain(a.drain))?;
    print_stream_summary(&stats, store.as_ref(), started.elapsed().as_secs_f64(), "")
}

fn print_stream_summary(s: &StreamerStats, store: &dyn OnlineStore, secs: f64, indent: &str) -> Result<()> {
    println!(
        "streamed {} events into the online store {} in {secs:.2} s ({} events/s)",
        thousands(s.read),
        store.describe(),
        thousands(per_sec(s.read, secs) as u64)
    );
    let counts = store.counts()?;
    println!(
        "{indent}  counted {}, {} exact duplicates once, {} deletes; holds {} sessions, {} users, {} products",
        thousands(s.counted),
        thousands(s.duplicates),
        thousands(s.deletes),
        thousands(counts.sessions),
        thousands(counts.users),
        thousands(counts.products)
    );
    Ok(())
}

fn build(ctx: &Ctx, a: &FeaturesBuildArgs) -> Result<()> {
    let until = time_arg("--until", a.until.clone(), cartflow_core::time::parse_timestamp)?;
    let mut warehouse = streamer::open_warehouse(ctx, a.lake.location.as_ref().map(|l| l.to_string()))?;
    let bar = progress(ctx.quiet, None, "training set");
    let report =
        warehouse.build_training_set(&TrainingOptions { until, session_ttl: ctx.cfg.features.session_ttl() })?;
    bar.finish_and_clear();
    println!(
        "features.cart_features: {} first carts from {} silver events, {} bought ({:.1}%), {} v1+v2 features each",
        thousands(report.rows),
        thousands(report.events),
        thousands(report.positives),
        100.0 * report.positives as f64 / report.rows.max(1) as f64,
        FEATURES.len()
    );
    println!(
        "written to {} Parquet files under {}/features in {:.2} s (replay {:.2} s); query with `cartflow sql`",
        report.files,
        warehouse.location(),
        report.seconds,
        report.replay_seconds
    );
    if let Some(url) = a.postgres.clone().or_else(|| ctx.cfg.features.postgres.clone()) {
        let started = Instant::now();
        let shown = cartflow_core::redact::url(&url);
        let rows =
            warehouse.export_training_set(&url).with_context(|| format!("loading the training set into {shown}"))?;
        println!(
            "loaded {} rows into feature_store.cart_features at {shown} in {:.2} s",
            thousands(rows),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn materialize(ctx: &Ctx, a: FeaturesMaterializeArgs) -> Result<()> {
    let store = ctx.cfg.open_online(a.online.online.as_ref())?;
    let warehouse = streamer::open_warehouse(ctx, a.lake.location.map(|l| l.to_string()))?;
    let started = Instant::now();
    if a.incremental {
        return materialize_incremental(&warehouse, store.as_ref(), started);
    }
    let offsets: Vec<CommittedOffset> = warehouse
        .state()
        .lake_offsets
        .iter()
        .filter_map(|(key, offset)| {
            let (topic, partition) = key.rsplit_once('/')?;
            let partition = partition.parse().ok()?;
            (topic == VALIDATED).then(|| CommittedOffset {
                topic: topic.to_owned(),
                partition,
                offset: *offset,
                metadata: "materialize".into(),
            })
        })
        .collect();
    if offsets.is_empty() {
        bail!(
            "silver does not say which landed events it holds (no build yet, or --since/--until left hours out): \
             run `cartflow warehouse build` over the whole lake first"
        );
    }
    // The lake names every partition that landed an event: the topic's partitions.
    let partitions = offsets.iter().map(|o| o.partition + 1).max().unwrap_or(1);
    let (entities, events) = warehouse.replay_entities(ctx.cfg.features.session_ttl(), partitions)?;
    let counts = store.replace(entities, &offsets)?;
    store.checkpoint()?;
    println!(
        "materialized {} silver events into {}: {} live sessions, {} users, {} products, in {:.2} s",
        thousands(events),
        store.describe(),
        thousands(counts.sessions),
        thousands(counts.users),
        thousands(counts.products),
        started.elapsed().as_secs_f64()
    );
    let at: Vec<String> = offsets.iter().map(|o| format!("{}", o.offset)).collect();
    println!("the streamer resumes {VALIDATED} at offsets [{}]", at.join(", "));
    Ok(())
}

/// Applies the landed events beyond the store's position, in event-time order.
fn materialize_incremental(warehouse: &Warehouse, store: &dyn OnlineStore, started: Instant) -> Result<()> {
    let from: BTreeMap<u32, u64> =
        store.offsets()?.into_iter().filter(|o| o.topic == VALIDATED).map(|o| (o.partition, o.offset)).collect();
    let landed = warehouse.landed_after(&from)?;
    let mut next = from.clone();
    for l in &landed {
        let at = next.entry(l.partition).or_default();
        *at = (*at).max(l.offset + 1);
    }
    let offsets: Vec<CommittedOffset> = next
        .iter()
        .map(|(p, o)| CommittedOffset {
            topic: VALIDATED.into(),
            partition: *p,
            offset: *o,
            metadata: "materialize".into(),
        })
        .collect();
    let changes: Vec<Change> = landed
        .into_iter()
        .map(|l| Change { event: l.event, delete: l.delete, partition: l.partition, offset: l.offset })
        .collect();
    let stats = store.apply(&changes, &offsets)?;
    store.checkpoint()?;
    println!(
        "materialized {} landed events beyond the store's position into {} ({} counted, {} duplicates) in {:.2} s",
        thousands(changes.len() as u64),
        store.describe(),
        thousands(stats.counted),
        thousands(stats.duplicates),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn serve(ctx: &Ctx, a: FeaturesServeArgs) -> Result<()> {
    let online = a.online.online.clone().unwrap_or_else(|| ctx.cfg.features.online.clone());
    let addr = a.addr.clone().unwrap_or_else(|| ctx.cfg.features.addr.clone());
    let listener = listen::listen(ctx, &addr, "the feature API", &a.listen)?;
    let store = ctx.open_when_up("the online store", false, || ctx.cfg.open_online(Some(&online)))?;
    let control = ctx.control.with_drain(false);
    // The embedded store lives in this process: the streamer must run here.
    let streamer = online.is_embedded().then(|| streamer::spawn(ctx, store.clone(), &control));
    telemetry::metrics_handle();
    cartflow_serve::describe_metrics();
    let health = ctx.health.clone();
    let describe = store.describe();
    let telemetry = cartflow_serve::Telemetry {
        metrics: Arc::new(|| telemetry::metrics_handle().render()),
        status: Arc::new(move || serde_json::json!({ "online_store": describe, "stages": health.snapshot() })),
    };
    let api = cartflow_serve::router(store.clone(), telemetry, listener.tokens.clone(), ctx.cfg.serve.limits());
    println!(
        "feature API on {} (POST /features, POST /get-online-features, /metrics, /status, /health)",
        listener.url()
    );
    if let Some(admin) = &listener.admin {
        println!("token     {}", admin.shown());
    }
    println!("reading {}{}", store.describe(), if streamer.is_some() { ", kept current here" } else { "" });
    listen::runtime()
        .block_on(listener.server.serve(api, listen::stopped(control)))
        .context("serving the feature API")?;
    if let Some(handle) = streamer {
        let stats = handle.join().map_err(|_| anyhow::anyhow!("the feature streamer panicked"))??;
        println!("streamed {} events while serving; state snapshotted", thousands(stats.read));
    }
    Ok(())
}

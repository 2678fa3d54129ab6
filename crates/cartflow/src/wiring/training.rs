//! Training as `train` and `run` do it: reads `features.cart_features`,
//! tunes and trains, logs every trial and the result to an MLflow-compatible
//! registry (the embedded one, served in-process, or any tracking server by
//! URL), registers the model and moves `champion` only when the new model
//! beats it on the same validation window ([`cartflow_train::promote`]).

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cartflow_features::FeatureSet;
use cartflow_model::Model;
use cartflow_registry::proto::{Metric, Param, Tag, now_ms};
use cartflow_registry::{Client, RegistryLocation};
use cartflow_train::promote::{CHAMPION, Incumbent, Promotion, promote};
use cartflow_train::{Frame, Outcome, TrainConfig, TrialReport, TrialState, TuneConfig};

use crate::cli::TrainArgs;
use crate::commands::Ctx;
use crate::wiring::study::StudyWorker;

/// The trainer's record of what it did, for the summaries.
pub struct Trained {
    pub outcome: Outcome,
    /// `None`: a study worker whose trials were not the study's best.
    pub registered: Option<Registered>,
    pub registry: String,
}

pub struct Registered {
    pub version: String,
    pub alias: &'static str,
}

fn params(p: &cartflow_train::Params) -> Vec<Param> {
    let v = serde_json::to_value(p).expect("params serialize");
    v.as_object()
        .expect("params are an object")
        .iter()
        .map(|(k, v)| Param { key: k.clone(), value: v.to_string() })
        .collect()
}

fn metric(key: &str, value: f64, step: i64) -> Metric {
    Metric { key: key.to_owned(), value, timestamp: now_ms(), step }
}

/// Prints the live table and logs each finished trial as a child run.
struct TrialLog<'a> {
    client: &'a Client,
    experiment: &'a str,
    parent: &'a str,
    quiet: bool,
    failure: Mutex<Option<String>>,
}

impl TrialLog<'_> {
    fn header(&self) {
        if !self.quiet {
            println!(
                "{:>5} {:>4} {:>6} {:>5} {:>6} {:>6} {:>5} {:>5} {:>6} {:>5} {:>8} {:>7}  state",
                "trial", "rung", "trees", "depth", "lr", "mcw", "sub", "col", "l2", "posw", "logloss", "auc"
            );
        }
    }

    fn log_child(&self, r: &TrialReport) -> cartflow_registry::Result<()> {
        let run = self.client.create_run(self.experiment, &format!("trial-{:02}", r.trial), Some(self.parent))?;
        let metrics = [
            metric("valid_log_loss", r.valid_log_loss, r.rung as i64),
            metric("valid_roc_auc", r.valid_auc, r.rung as i64),
            metric("trees", r.trees as f64, r.rung as i64),
        ];
        let state = serde_json::to_value(r.state).expect("state serializes").as_str().unwrap_or_default().to_owned();
        let tags = [
            Tag { key: "cartflow.trial_state".into(), value: state },
            Tag { key: "cartflow.rung".into(), value: r.rung.to_string() },
        ];
        self.client.log_batch(&run.run_id, &metrics, &params(&r.params), &tags)?;
        self.client.finish_run(&run.run_id, if r.state == TrialState::Pruned { "KILLED" } else { "FINISHED" })
    }
}

impl cartflow_train::Observer for TrialLog<'_> {
    fn report(&self, r: &TrialReport) {
        if !self.quiet {
            let p = &r.params;
            let state = match r.state {
                TrialState::Promoted => "promoted",
                TrialState::Pruned => "pruned",
                TrialState::Complete => "complete",
            };
            println!(
                "{:>5} {:>4} {:>6} {:>5} {:>6.3} {:>6.2} {:>5.2} {:>5.2} {:>6.3} {:>5.2} {:>8.5} {:>7.4}  {state} ({:.1}s)",
                r.trial,
                r.rung,
                r.trees,
                p.max_depth,
                p.learning_rate,
                p.min_child_weight,
                p.subsample,
                p.colsample,
                p.l2,
                p.pos_weight,
                r.valid_log_loss,
                r.valid_auc,
                r.seconds
            );
        }
        if r.state != TrialState::Promoted
            && let Err(e) = self.log_child(r)
        {
            self.failure.lock().expect("not poisoned").get_or_insert(format!("logging trial {}: {e}", r.trial));
        }
    }
}

/// Trains, logs, registers and decides the alias.
pub fn train(ctx: &Ctx, a: TrainArgs) -> Result<Trained> {
    let cfg = &ctx.cfg.train;
    let feature_set = a.features.unwrap_or(cfg.features);
    let set_name = match feature_set {
        FeatureSet::V1 => "v1",
        FeatureSet::V2 => "v2",
    };
    let trials = a.trials.unwrap_or(cfg.trials);
    if trials == 0 {
        bail!("--trials must be at least 1");
    }
    let cores = cartflow_train::cores();
    let parallel = a.parallel.unwrap_or(if cfg.parallel == 0 { cores } else { cfg.parallel }).max(1);
    let timeout = a.timeout.or((cfg.timeout_secs > 0).then_some(cfg.timeout_secs)).map(Duration::from_secs);
    let config = TrainConfig {
        feature_set,
        tune: TuneConfig { trials, parallel, timeout, seed: a.seed.unwrap_or(cfg.seed), cores },
    };

    let warehouse = super::streamer::open_warehouse(ctx, None)?;
    let batches = warehouse
        .sql("SELECT * FROM features.cart_features")
        .context("reading the training set (build it with `cartflow features build`)")?;
    let frame = Frame::from_batches(&batches)?;
    if frame.rows() == 0 {
        bail!("the training set is empty: run `cartflow features build` after the warehouse has data");
    }

    let url = a.registry.unwrap_or_else(|| ctx.cfg.registry.url.clone());
    let client = super::registry::client(ctx, &url)?;
    let base = client.base().to_owned();
    let registry = match &url {
        RegistryLocation::Embedded => {
            format!("the embedded registry ({})", ctx.cfg.data_dir.join("registry").display())
        }
        remote => remote.describe(),
    };
    let experiment = client
        .experiment_id(&ctx.cfg.registry.experiment)
        .with_context(|| format!("reaching the registry at {base}"))?;
    let parent = client.create_run(&experiment, &format!("train-{set_name}"), None)?;

    if !ctx.quiet {
        println!(
            "training on {} carts ({} features {set_name}), {trials} trials, {parallel} at once; logging to {registry}",
            frame.rows(),
            feature_set.features().count()
        );
    }
    let log = TrialLog {
        client: &client,
        experiment: &experiment,
        parent: &parent.run_id,
        quiet: ctx.quiet,
        failure: Mutex::new(None),
    };
    log.header();
    let study = match &a.study {
        Some(name) => {
            let stale = Duration::from_secs(a.study_stale_secs.max(1));
            Some(StudyWorker::join(ctx, name, a.study_storage.as_deref(), trials, stale)?)
        }
        None => None,
    };
    let local = cartflow_train::LocalStudy::new(trials);
    let keeper: &dyn cartflow_train::Study = match &study {
        Some(s) => s,
        None => &local,
    };
    let outcome = match cartflow_train::train_in(&frame, &config, &log, keeper) {
        Ok(o) => o,
        Err(e) => {
            let _ = client.finish_run(&parent.run_id, "FAILED");
            return Err(e.into());
        }
    };
    if let Some(failure) = log.failure.into_inner().expect("not poisoned") {
        bail!("{failure}");
    }
    if let Some(study) = &study
        && let Some(elsewhere) = study_best_elsewhere(study, &outcome, ctx.quiet)?
    {
        client.finish_run(&parent.run_id, "FINISHED")?;
        return Ok(Trained { outcome, registered: None, registry: elsewhere });
    }

    // The run: params, metrics beside the baselines, artifacts.
    let mut run_params = params(&outcome.params);
    run_params.extend([
        Param { key: "feature_set".into(), value: set_name.to_owned() },
        Param { key: "trials".into(), value: trials.to_string() },
        Param { key: "parallel".into(), value: parallel.to_string() },
        Param { key: "train_rows".into(), value: outcome.split.train_rows.to_string() },
        Param { key: "valid_rows".into(), value: outcome.split.valid_rows.to_string() },
        Param { key: "booster".into(), value: "forust".into() },
    ]);
    let mut metrics: Vec<Metric> =
        outcome.metrics.scalars().into_iter().map(|(k, v)| metric(&format!("valid_{k}"), v, 0)).collect();
    for (name, m) in &outcome.baselines {
        metrics.extend(
            m.scalars()
                .into_iter()
                .filter(|(k, _)| ["roc_auc", "pr_auc", "log_loss", "brier"].contains(k))
                .map(|(k, v)| metric(&format!("{name}_{k}"), v, 0)),
        );
    }
    metrics.push(metric("trees", outcome.model.ensemble.trees() as f64, 0));
    metrics.push(metric("train_seconds", outcome.seconds, 0));
    client.log_batch(&parent.run_id, &metrics, &run_params, &[])?;
    for (name, bytes) in outcome.artifacts()? {
        if name != "model.json" {
            client.upload(&parent.artifact_uri, name, &bytes)?;
        }
    }
    let logged = log_model(&client, &experiment, &parent.run_id, &outcome.model, &run_params)?;

    // Champion or challenger, judged on this training set's validation window.
    let name = &ctx.cfg.registry.model_name;
    client.ensure_registered_model(name, "Will the shopper buy the item they just carted? (cartflow)")?;
    let incumbent = match client.version_by_alias(name, CHAMPION)? {
        None => None,
        Some(champion) => {
            let bytes = client
                .version_file(name, &champion.version, "model.json")
                .with_context(|| format!("downloading champion version {}", champion.version))?;
            let model = Model::from_json(&bytes).with_context(|| format!("champion version {}", champion.version))?;
            let (p, y) = cartflow_train::score(&model, &frame)?;
            Some(Incumbent { version: champion.version, roc_auc: cartflow_train::metrics::roc_auc(&p, &y) })
        }
    };
    let Promotion { alias, reason: why } = promote(outcome.metrics.roc_auc, incumbent.as_ref());
    let id = &logged.info.model_id;
    let version = client.create_model_version(name, &format!("models:/{id}"), &parent.run_id, Some(id))?;
    client.set_alias(name, alias, &version.version)?;
    client.log_batch(
        &parent.run_id,
        &[],
        &[],
        &[
            Tag { key: "cartflow.alias".into(), value: alias.into() },
            Tag { key: "cartflow.alias_reason".into(), value: why.clone() },
        ],
    )?;
    client.finish_run(&parent.run_id, "FINISHED")?;
    if !ctx.quiet {
        println!("{name} v{} is {alias}: {why}", version.version);
    }
    let registered = Registered { version: version.version, alias };
    Ok(Trained { outcome, registered: Some(registered), registry: format!("{registry}, run {}", parent.run_id) })
}

/// Offers this worker's best trial, then, once the study has settled:
/// `None` when the best offer is this worker's and it takes the study's one
/// registration, else what happened.
fn study_best_elsewhere(study: &StudyWorker, outcome: &Outcome, quiet: bool) -> Result<Option<String>> {
    let s = &study.study;
    let loss = outcome.trials.iter().find(|t| t.trial == outcome.best_trial).map(|t| t.valid_log_loss);
    study.block_on(s.offer(outcome.best_trial as u64, loss.context("the best trial has a report")?))?;
    if !quiet {
        println!("study {}: waiting for the other workers' trials to end", s.name());
    }
    let (worker, number, loss) = study.block_on(s.winner())?.context("no trial of the study completed")?;
    let trials = study.block_on(s.trials_now())?;
    let failed = trials.iter().filter(|t| t.state == "failed").count();
    let summary = format!(
        "study {}: {} trials by {} workers ({failed} failed); the best of the live workers' is trial {number} by \
         {worker} (log loss {loss:.5})",
        s.name(),
        trials.len(),
        trials.iter().map(|t| t.worker.as_str()).collect::<std::collections::BTreeSet<_>>().len(),
    );
    if !quiet {
        println!("{summary}");
    }
    if worker == s.worker() && study.block_on(s.claim_registration())? {
        return Ok(None);
    }
    Ok(Some(format!("{summary}; {worker} registers it")))
}

/// The model as MLflow 3 logs one (`mlflow.<flavor>.log_model`): a logged
/// model of the run, named `model`, holding an MLflow model directory with a
/// `python_function` flavor, so `mlflow.pyfunc.load_model` scores with it.
fn log_model(
    client: &Client,
    experiment: &str,
    run_id: &str,
    model: &Model,
    params: &[Param],
) -> Result<cartflow_registry::proto::LoggedModel> {
    let logged = client.create_logged_model(experiment, "model", run_id, params)?;
    let created = cartflow_core::time::rfc3339(cartflow_core::time::now_micros());
    let origin = cartflow_model::mlflow::Origin {
        artifact_uri: &logged.info.artifact_uri,
        run_id,
        model_id: &logged.info.model_id,
        created: &created,
    };
    for (path, bytes) in cartflow_model::mlflow::files(model, &origin) {
        client.upload(&logged.info.artifact_uri, path, &bytes)?;
    }
    client.finalize_logged_model(&logged)?;
    Ok(logged)
}

//! The registry's record of training as Prometheus gauges, for a training
//! dashboard: runs by status, trials, the best trial of each recent
//! training run, and the version and metric behind each alias. Read from
//! the store every [`EVERY`] (not per scrape: a scrape never waits on it).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Result;
use crate::client::PARENT_RUN_TAG;
use crate::store::Store;

pub const RUNS: &str = "cartflow_registry_runs";
pub const TRIALS: &str = "cartflow_registry_trials";
pub const RUN_BEST: &str = "cartflow_registry_run_best_metric";
pub const ALIAS_VERSION: &str = "cartflow_registry_alias_version";
pub const ALIAS_METRIC: &str = "cartflow_registry_alias_metric";

/// The metric the gauges follow: the trainer's validation ROC AUC.
pub const METRIC: &str = "valid_roc_auc";
/// Training runs per experiment with a best-trial series (the latest).
const RECENT_RUNS: usize = 20;
pub const EVERY: Duration = Duration::from_secs(15);

pub fn describe() {
    use metrics::describe_gauge;
    describe_gauge!(RUNS, "Top-level runs, by experiment and status.");
    describe_gauge!(TRIALS, "Child runs (tuning trials), by experiment and status.");
    describe_gauge!(RUN_BEST, "Best valid_roc_auc among a training run's trials (or its own), for its latest runs.");
    describe_gauge!(ALIAS_VERSION, "The version an alias points to, by model and alias.");
    describe_gauge!(ALIAS_METRIC, "valid_roc_auc of the run behind an alias's version, by model and alias.");
}

/// Sets every gauge from the store once.
pub async fn refresh(store: &Store) -> Result<()> {
    for e in store.experiments(&["active"]).await? {
        let runs = store.runs(std::slice::from_ref(&e.experiment_id), &["active"]).await?;
        let mut top: BTreeMap<&str, f64> = BTreeMap::new();
        let mut trials: BTreeMap<&str, f64> = BTreeMap::new();
        // Parent id → best metric of its children.
        let mut best: BTreeMap<&str, f64> = BTreeMap::new();
        for run in &runs {
            match run.tag(PARENT_RUN_TAG) {
                Some(parent) => {
                    *trials.entry(&run.info.status).or_default() += 1.0;
                    if let Some(m) = run.metric(METRIC) {
                        let b = best.entry(parent).or_insert(m);
                        *b = b.max(m);
                    }
                }
                None => *top.entry(&run.info.status).or_default() += 1.0,
            }
        }
        for (status, n) in top {
            metrics::gauge!(RUNS, "experiment" => e.name.clone(), "status" => status.to_owned()).set(n);
        }
        for (status, n) in trials {
            metrics::gauge!(TRIALS, "experiment" => e.name.clone(), "status" => status.to_owned()).set(n);
        }
        let mut parents: Vec<_> = runs.iter().filter(|r| r.tag(PARENT_RUN_TAG).is_none()).collect();
        parents.sort_by_key(|r| std::cmp::Reverse(r.info.start_time));
        for run in parents.into_iter().take(RECENT_RUNS) {
            let trials = best.get(run.info.run_id.as_str()).copied();
            let Some(value) = [trials, run.metric(METRIC)].into_iter().flatten().reduce(f64::max) else { continue };
            metrics::gauge!(RUN_BEST, "experiment" => e.name.clone(), "run" => run.info.run_name.clone()).set(value);
        }
    }
    for model in store.registered_models().await? {
        for v in store.model_versions(Some(&model.name)).await? {
            let metric = match store.run(&v.run_id).await {
                Ok(run) => run.metric(METRIC),
                Err(_) => None,
            };
            for alias in &v.aliases {
                let labels = [("model", model.name.clone()), ("alias", alias.clone())];
                metrics::gauge!(ALIAS_VERSION, &labels).set(v.version.parse::<f64>().unwrap_or(f64::NAN));
                if let Some(m) = metric {
                    metrics::gauge!(ALIAS_METRIC, &labels).set(m);
                }
            }
        }
    }
    Ok(())
}

/// Refreshes the gauges every [`EVERY`] on `runtime`, for as long as it runs.
pub fn spawn(store: Store, runtime: &tokio::runtime::Handle) {
    describe();
    runtime.spawn(async move {
        loop {
            if let Err(e) = refresh(&store).await {
                tracing::warn!("registry gauges not refreshed: {}", e.message);
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}

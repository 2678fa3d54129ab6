//! `cartflow train --study NAME`: the tuner's trials kept in the registry's
//! database ([`cartflow_registry::SharedStudy`]), so workers on several
//! machines share one search. The tuner's threads are not async; each call
//! waits on the process's runtime.

use std::time::Duration;

use anyhow::{Context, Result};
use cartflow_registry::SharedStudy;
use cartflow_train::{Observation, Study, TrainError, TrialReport, TrialState};

use crate::commands::Ctx;

pub struct StudyWorker {
    pub study: SharedStudy,
    stale: Duration,
    rt: tokio::runtime::Handle,
}

fn err(e: cartflow_registry::RegistryError) -> TrainError {
    TrainError::Input(format!("tuning study: {e}"))
}

impl StudyWorker {
    /// Joins study `name` in `storage` (the registry's database unless given) with `trials` trials.
    pub fn join(ctx: &Ctx, name: &str, storage: Option<&str>, trials: usize, stale: Duration) -> Result<StudyWorker> {
        let url = storage.map(str::to_owned).or_else(|| ctx.cfg.registry.store.clone()).context(
            "a shared study needs a database every worker reaches: set registry.store (postgres://…) or --study-storage",
        )?;
        let host = hostname();
        let worker = format!("{host}:{}", std::process::id());
        let rt = cartflow_lake::runtime().handle().clone();
        let study = rt
            .block_on(SharedStudy::open(&url, name, trials as u64, &worker, stale))
            .with_context(|| format!("opening study {name:?} at {}", cartflow_core::redact::url(&url)))?;
        Ok(StudyWorker { study, stale, rt })
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

impl Study for StudyWorker {
    fn claim(&self) -> Result<Option<usize>, TrainError> {
        Ok(self.block_on(self.study.claim()).map_err(err)?.map(|n| n as usize))
    }

    fn finished(&self, trial: usize) -> Result<Vec<Observation>, TrainError> {
        let all = self.block_on(self.study.finished()).map_err(err)?;
        let from: Vec<u64> = all.iter().map(|(n, _, _)| *n).collect();
        self.block_on(self.study.proposed(trial as u64, &from)).map_err(err)?;
        Ok(all.into_iter().map(|(_, point, loss)| Observation { point, loss }).collect())
    }

    fn rung(&self, trial: usize, rung: usize, loss: f64) -> Result<Vec<f64>, TrainError> {
        self.block_on(self.study.rung(trial as u64, rung as u64, loss)).map_err(err)
    }

    fn finish(&self, report: &TrialReport, point: Option<&[f64]>) -> Result<(), TrainError> {
        let state = match report.state {
            TrialState::Pruned => "pruned",
            TrialState::Complete | TrialState::Promoted => "complete",
        };
        let json = serde_json::to_string(report).expect("trial reports serialize");
        let done = self.study.finish(report.trial as u64, state, point, report.valid_log_loss, &json);
        self.block_on(done).map_err(err)
    }

    /// Well inside the time after which a silent worker's trials are failed.
    fn alive_every(&self) -> Duration {
        self.stale / 4
    }

    fn alive(&self, trials: &[usize]) -> Result<(), TrainError> {
        let trials: Vec<u64> = trials.iter().map(|t| *t as u64).collect();
        self.block_on(self.study.alive(&trials)).map_err(err)
    }
}

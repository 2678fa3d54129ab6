//! Hyperparameter search: TPE proposes (the `tpe` crate, one estimator per
//! parameter), asynchronous successive halving (ASHA) prunes, trials run in
//! parallel. A trial trains 50 trees, then 150, then its full budget, each
//! time from scratch (forust cannot resume) and with early stopping on the
//! validation loss; after each rung it stops unless its loss is in the best
//! third of the trials that reached that rung. The trials, their losses at
//! each rung and the numbering are the [`Study`]'s: this process's, or one
//! that workers on several machines share.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand_tpe::SeedableRng;
use rand_tpe::rngs::StdRng;
use serde::Serialize;
use tpe::TpeOptimizer;

use crate::booster::{EARLY_STOPPING_ROUNDS, Fitted, Params, fit};
use crate::encode::Encoded;
use crate::metrics::roc_auc;
use crate::study::Study;

/// Tree budgets before a trial's own: where ASHA compares and prunes.
pub const RUNGS: [usize; 2] = [50, 150];
/// Only the best 1/η of a rung go on.
pub const REDUCTION: usize = 3;

#[derive(Debug, Clone)]
pub struct TuneConfig {
    pub trials: usize,
    /// Trials at once.
    pub parallel: usize,
    /// No new trials start after this; running ones finish their rung.
    pub timeout: Option<Duration>,
    pub seed: u64,
    /// Cores in all; each trial gets its share.
    pub cores: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    /// Reached a rung and goes on to the next.
    Promoted,
    /// Stopped by ASHA at a rung.
    Pruned,
    /// Trained to its own budget (or stopped early by the validation loss).
    Complete,
}

/// A trial at a rung, as the live table shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TrialReport {
    pub trial: usize,
    pub rung: usize,
    pub budget: usize,
    pub trees: usize,
    pub params: Params,
    pub valid_log_loss: f64,
    pub valid_auc: f64,
    pub state: TrialState,
    pub seconds: f64,
}

/// Told of each trial at each rung, from the trial's thread.
pub trait Observer: Sync {
    fn report(&self, report: &TrialReport);
}

impl<F: Fn(&TrialReport) + Sync> Observer for F {
    fn report(&self, report: &TrialReport) {
        self(report)
    }
}

/// What the search found: each trial's last report, the best full trial.
pub struct Tuned {
    pub trials: Vec<TrialReport>,
    pub best: Option<(TrialReport, Fitted)>,
    pub timed_out: bool,
}

/// A parameter TPE searches: its range, log scale or not, whole or not.
struct Dimension {
    optimizer: TpeOptimizer,
    log: bool,
    integer: bool,
}

impl Dimension {
    fn new(low: f64, high: f64, log: bool, integer: bool) -> Self {
        let (a, b) = if log { (low.ln(), high.ln()) } else { (low, high) };
        let range = tpe::range(a, b).expect("search ranges are non-empty");
        Self { optimizer: TpeOptimizer::new(tpe::parzen_estimator(), range), log, integer }
    }

    fn value(&self, raw: f64) -> f64 {
        let v = if self.log { raw.exp() } else { raw };
        if self.integer { v.round() } else { v }
    }
}

/// The search space; `pos_weight` is searched only when classes are imbalanced.
struct Space {
    dims: Vec<Dimension>,
    rng: StdRng,
}

impl Space {
    fn new(imbalance: f64, seed: u64) -> Self {
        let mut dims = vec![
            Dimension::new(3.0, 10.0, false, true),    // max_depth
            Dimension::new(0.02, 0.3, true, false),    // learning_rate
            Dimension::new(0.5, 50.0, true, false),    // min_child_weight
            Dimension::new(0.5, 1.0, false, false),    // subsample
            Dimension::new(0.5, 1.0, false, false),    // colsample
            Dimension::new(0.01, 10.0, true, false),   // l2
            Dimension::new(150.0, 800.0, false, true), // rounds
        ];
        // Positives this many times rarer than negatives: weight them up to that.
        if imbalance > 1.5 {
            dims.push(Dimension::new(1.0, imbalance, true, false));
        }
        Self { dims, rng: StdRng::seed_from_u64(seed) }
    }

    fn ask(&mut self) -> (Vec<f64>, Params) {
        let raw: Vec<f64> =
            self.dims.iter_mut().map(|d| d.optimizer.ask(&mut self.rng).expect("TPE proposes in range")).collect();
        let v: Vec<f64> = self.dims.iter().zip(&raw).map(|(d, &r)| d.value(r)).collect();
        let params = Params {
            max_depth: v[0] as usize,
            learning_rate: v[1],
            min_child_weight: v[2],
            subsample: v[3].min(1.0),
            colsample: v[4].min(1.0),
            l2: v[5],
            rounds: v[6] as usize,
            pos_weight: v.get(7).copied().unwrap_or(1.0),
        };
        (raw, params)
    }

    fn tell(&mut self, raw: &[f64], loss: f64) {
        for (d, &r) in self.dims.iter_mut().zip(raw) {
            // Only fails for a value outside the range, which ask never gives.
            let _ = d.optimizer.tell(r, loss);
        }
    }

    /// A proposal for trial `trial` from every finished trial of the study:
    /// the same study state and trial number always give the same proposal.
    fn propose(imbalance: f64, seed: u64, trial: usize, finished: &[crate::study::Observation]) -> (Vec<f64>, Params) {
        let mut space = Space::new(imbalance, seed.wrapping_add(trial as u64));
        let dims = space.dims.len();
        for o in finished.iter().filter(|o| o.point.len() == dims) {
            space.tell(&o.point, o.loss);
        }
        space.ask()
    }
}

struct Search<'a> {
    train: &'a Encoded,
    valid: &'a Encoded,
    config: &'a TuneConfig,
    observer: &'a dyn Observer,
    study: &'a dyn Study,
    imbalance: f64,
    /// Trials this process is running, for the study's liveness.
    running: Mutex<BTreeSet<usize>>,
    finished: Mutex<Vec<TrialReport>>,
    best: Mutex<Option<(TrialReport, Fitted)>>,
    started: Instant,
    stopped_by_timeout: std::sync::atomic::AtomicBool,
}

impl Search<'_> {
    /// Whether a loss at `rung` is outside the best 1/η the study saw there (itself included).
    fn prune(&self, trial: usize, rung: usize, loss: f64) -> Result<bool, crate::TrainError> {
        let mut losses = self.study.rung(trial, rung, loss)?;
        if losses.len() < REDUCTION {
            return Ok(false);
        }
        losses.sort_by(f64::total_cmp);
        Ok(loss > losses[losses.len() / REDUCTION - 1])
    }

    fn timed_out(&self) -> bool {
        self.config.timeout.is_some_and(|t| self.started.elapsed() >= t)
    }

    fn worker(&self, threads: usize) -> Result<(), crate::TrainError> {
        loop {
            if self.timed_out() {
                self.stopped_by_timeout.store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(());
            }
            let Some(trial) = self.study.claim()? else { return Ok(()) };
            self.running.lock().expect("not poisoned").insert(trial);
            // The first trial is a sound default, so even a budget of one trial is sensible.
            let (raw, params) = match trial {
                0 => (None, Params::default()),
                _ => {
                    let finished = self.study.finished(trial)?;
                    let (raw, p) = Space::propose(self.imbalance, self.config.seed, trial, &finished);
                    (Some(raw), p)
                }
            };
            let report = self.run_trial(trial, params, threads)?;
            self.study.finish(&report, raw.as_deref())?;
            self.running.lock().expect("not poisoned").remove(&trial);
            self.finished.lock().expect("not poisoned").push(report);
        }
    }

    fn run_trial(&self, trial: usize, params: Params, threads: usize) -> Result<TrialReport, crate::TrainError> {
        let budgets: Vec<usize> = RUNGS.iter().copied().filter(|&r| r < params.rounds).chain([params.rounds]).collect();
        let started = Instant::now();
        for (rung, &budget) in budgets.iter().enumerate() {
            let fitted = fit(&params, budget, self.train, self.valid, self.config.seed + trial as u64, threads)?;
            // Stopped by the validation loss before the budget: more trees would not help.
            let last = rung + 1 == budgets.len() || fitted.trees + EARLY_STOPPING_ROUNDS <= budget;
            let state = if last {
                // Reaching a rung counts there, whether or not the trial goes on (ASHA).
                self.study.rung(trial, rung, fitted.valid_log_loss)?;
                TrialState::Complete
            } else if self.prune(trial, rung, fitted.valid_log_loss)? {
                TrialState::Pruned
            } else {
                TrialState::Promoted
            };
            let report = TrialReport {
                trial,
                rung,
                budget,
                trees: fitted.trees,
                params,
                valid_log_loss: fitted.valid_log_loss,
                valid_auc: roc_auc(&fitted.valid_predictions, &self.valid.labels),
                state,
                seconds: started.elapsed().as_secs_f64(),
            };
            self.observer.report(&report);
            match state {
                TrialState::Promoted => continue,
                TrialState::Pruned => return Ok(report),
                TrialState::Complete => {
                    let mut best = self.best.lock().expect("not poisoned");
                    if best.as_ref().is_none_or(|(b, _)| report.valid_log_loss < b.valid_log_loss) {
                        *best = Some((report.clone(), fitted));
                    }
                    return Ok(report);
                }
            }
        }
        unreachable!("the last budget completes the trial")
    }
}

/// Runs the search, keeping its trials in `study`; trials share `config.cores` cores.
pub fn tune(
    train: &Encoded,
    valid: &Encoded,
    config: &TuneConfig,
    observer: &dyn Observer,
    study: &dyn Study,
) -> Result<Tuned, crate::TrainError> {
    let positives = train.labels.iter().sum::<f64>().max(1.0);
    let imbalance = (train.rows as f64 - positives) / positives;
    let search = Search {
        train,
        valid,
        config,
        observer,
        study,
        imbalance,
        running: Mutex::new(BTreeSet::new()),
        finished: Mutex::new(Vec::new()),
        best: Mutex::new(None),
        started: Instant::now(),
        stopped_by_timeout: std::sync::atomic::AtomicBool::new(false),
    };
    let workers = config.parallel.clamp(1, config.trials.max(1));
    let threads = (config.cores / workers).max(1);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let alive = s.spawn(|| {
            let mut last = Instant::now();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if last.elapsed() >= study.alive_every() {
                    let running: Vec<usize> = search.running.lock().expect("not poisoned").iter().copied().collect();
                    if let Err(e) = study.alive(&running) {
                        tracing::warn!("telling the study the trials are alive: {e}");
                    }
                    last = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(|| search.worker(threads))).collect();
        let result = handles.into_iter().try_for_each(|h| h.join().expect("a trial thread panicked"));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        alive.join().expect("the liveness thread panicked");
        result
    })?;
    let mut trials = search.finished.into_inner().expect("not poisoned");
    trials.sort_by_key(|t| t.trial);
    let timed_out = search.stopped_by_timeout.into_inner();
    Ok(Tuned { trials, best: search.best.into_inner().expect("not poisoned"), timed_out })
}

//! Where a search keeps its trials. [`LocalStudy`] keeps them in this
//! process; a study in a database (the registry's, `cartflow train --study`)
//! lets workers on several machines share one search, as Optuna's RDB
//! storage does: each claims the next trial number, proposes from every
//! worker's finished trials, and prunes against every worker's losses at a
//! rung.

use std::sync::Mutex;

use crate::TrainError;
use crate::tune::TrialReport;

/// A trial's point in the search space, as TPE sees it (log scales
/// applied), and the validation loss it reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub point: Vec<f64>,
    pub loss: f64,
}

/// What a search asks of its trials' keeper. Every call may come from any
/// worker thread.
pub trait Study: Sync {
    /// The next trial to run, or `None` when every trial of the study has started.
    fn claim(&self) -> Result<Option<usize>, TrainError>;
    /// Every finished trial's point and loss, from every worker: what
    /// `trial`'s proposal is made from.
    fn finished(&self, trial: usize) -> Result<Vec<Observation>, TrainError>;
    /// Records `trial`'s loss at ASHA rung `rung`; returns every loss recorded there, this one included.
    fn rung(&self, trial: usize, rung: usize, loss: f64) -> Result<Vec<f64>, TrainError>;
    /// `trial` ended (pruned or complete); `point` is `None` for the default first trial.
    fn finish(&self, report: &TrialReport, point: Option<&[f64]>) -> Result<(), TrainError>;
    /// The trials this worker is running are still alive (a shared study
    /// fails those of a worker that stopped saying so).
    fn alive(&self, _trials: &[usize]) -> Result<(), TrainError> {
        Ok(())
    }
    /// How often to say so.
    fn alive_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(5)
    }
}

/// A study in this process's memory: `trials` trials, numbered from 0.
pub struct LocalStudy {
    trials: usize,
    state: Mutex<Local>,
}

#[derive(Default)]
struct Local {
    next: usize,
    finished: Vec<Observation>,
    rungs: Vec<Vec<f64>>,
}

impl LocalStudy {
    pub fn new(trials: usize) -> Self {
        LocalStudy { trials, state: Mutex::new(Local::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Local> {
        self.state.lock().expect("study lock poisoned")
    }
}

impl Study for LocalStudy {
    fn claim(&self) -> Result<Option<usize>, TrainError> {
        let mut s = self.state();
        if s.next >= self.trials {
            return Ok(None);
        }
        s.next += 1;
        Ok(Some(s.next - 1))
    }

    fn finished(&self, _trial: usize) -> Result<Vec<Observation>, TrainError> {
        Ok(self.state().finished.clone())
    }

    fn rung(&self, _trial: usize, rung: usize, loss: f64) -> Result<Vec<f64>, TrainError> {
        let mut s = self.state();
        if s.rungs.len() <= rung {
            s.rungs.resize(rung + 1, Vec::new());
        }
        s.rungs[rung].push(loss);
        Ok(s.rungs[rung].clone())
    }

    fn finish(&self, report: &TrialReport, point: Option<&[f64]>) -> Result<(), TrainError> {
        if let Some(point) = point {
            self.state().finished.push(Observation { point: point.to_vec(), loss: report.valid_log_loss });
        }
        Ok(())
    }
}

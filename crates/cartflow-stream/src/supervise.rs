//! Riding out a backing service's outage. A stage that fails because the
//! broker, the object store, Redis or the disk is away starts again from its
//! recovery, as a restarted process would (exactly once by the same proof:
//! it finds where to resume from its outputs), after a backoff, until it is
//! stopped. Any other failure (the data, the configuration) ends it at once.

use std::time::{Duration, Instant};

use crate::metrics::{STAGE_RESTARTS, STAGE_WAITING};
use crate::{Result, StageControl, StageError};

/// The first wait after a failure; it doubles up to [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(250);
const LONGEST_WAIT: Duration = Duration::from_secs(30);
/// An attempt that ran this long made progress: the next failure waits from the start again.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// A stage's counts that say, while it waits, what it waits for.
pub trait Waiting {
    fn set_waiting(&mut self, why: Option<String>);
}

/// An attempt's failure: its error, and the counts it had reached.
pub type Failed<S> = Box<(StageError, S)>;

pub fn failed<S>(e: impl Into<StageError>, counts: S) -> Failed<S> {
    Box::new((e.into(), counts))
}

/// The waits between attempts at a backing service that is away: doubling
/// from [`FIRST_WAIT`] to [`LONGEST_WAIT`], cut short when the stage is stopped.
#[derive(Debug, Clone)]
pub struct Backoff {
    wait: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { wait: FIRST_WAIT }
    }
}

impl Backoff {
    /// How long the next [`Backoff::sleep`] waits.
    pub fn next(&self) -> Duration {
        self.wait
    }

    /// Waits the next wait (doubling the one after); `false` when `control` stopped meanwhile.
    pub fn sleep(&mut self, control: &StageControl) -> bool {
        let until = Instant::now() + self.wait;
        while Instant::now() < until && !control.stopped() {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait = (self.wait * 2).min(LONGEST_WAIT);
        !control.stopped()
    }

    /// After progress: the next failure waits from the start again.
    pub fn reset(&mut self) {
        self.wait = FIRST_WAIT;
    }
}

/// Runs `attempt` (given the counts so far and the progress callback) until
/// it ends well, fails for good, or `control` stops it while it waits.
/// `attempt` hands back its counts with its error, so a restart counts on.
pub fn supervise<S: Clone + Default + Waiting>(
    stage: &'static str,
    control: &StageControl,
    progress: &mut dyn FnMut(&S),
    mut attempt: impl FnMut(S, &mut dyn FnMut(&S)) -> Result<S, Failed<S>>,
) -> Result<S> {
    metrics::counter!(STAGE_RESTARTS, "stage" => stage).increment(0);
    let waiting = metrics::gauge!(STAGE_WAITING, "stage" => stage);
    waiting.set(0.0);
    let mut stats = S::default();
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        match attempt(stats, progress).map_err(|failure| *failure) {
            Ok(done) => return Ok(done),
            Err((e, _)) if !e.is_transient() || control.stopped() => return Err(e),
            Err((e, mut last)) => {
                if started.elapsed() >= HEALTHY_RUN {
                    backoff.reset();
                }
                tracing::warn!(stage, "{e}; starting the stage again in {:.1} s", backoff.next().as_secs_f64());
                metrics::counter!(STAGE_RESTARTS, "stage" => stage).increment(1);
                waiting.set(1.0);
                last.set_waiting(Some(e.to_string()));
                progress(&last);
                let going_on = backoff.sleep(control);
                waiting.set(0.0);
                last.set_waiting(None);
                if !going_on {
                    return Err(e);
                }
                stats = last;
            }
        }
    }
}

//! How a stage is told to stop: Ctrl-C (or SIGTERM) sets the shutdown flag,
//! and in drain mode a stage stops by itself once it has caught up with its
//! inputs. Drain can be switched on while a stage runs: `cartflow run` does so
//! when the producer upstream has finished.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Default)]
pub struct StageControl {
    shutdown: Arc<AtomicBool>,
    drain: Arc<AtomicBool>,
}

impl StageControl {
    pub fn new(drain: bool) -> Self {
        StageControl { shutdown: Arc::default(), drain: Arc::new(AtomicBool::new(drain)) }
    }

    /// Shares the shutdown flag, with a drain flag of its own.
    pub fn with_drain(&self, drain: bool) -> Self {
        StageControl { shutdown: self.shutdown.clone(), drain: Arc::new(AtomicBool::new(drain)) }
    }

    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// From now on, stop once caught up.
    pub fn start_draining(&self) {
        self.drain.store(true, Ordering::SeqCst);
    }

    pub fn draining(&self) -> bool {
        self.drain.load(Ordering::SeqCst)
    }
}

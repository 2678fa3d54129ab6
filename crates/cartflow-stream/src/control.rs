//! How a stage is told to stop: Ctrl-C (or SIGTERM) sets the shutdown flag,
//! and with `drain` a stage stops by itself once it has caught up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Default)]
pub struct StageControl {
    shutdown: Arc<AtomicBool>,
    /// Stop once every input is read to its end.
    pub drain: bool,
}

impl StageControl {
    pub fn new(drain: bool) -> Self {
        StageControl { shutdown: Arc::default(), drain }
    }

    /// Shares the shutdown flag with another stage of the same process.
    pub fn with_drain(&self, drain: bool) -> Self {
        StageControl { shutdown: self.shutdown.clone(), drain }
    }

    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    pub fn flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }
}

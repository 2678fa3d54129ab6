//! The one place that turns configured backends into open ones (Quickwit's
//! `StorageResolver` in spirit): the event log, the online store, the lake,
//! and where the registry keeps its tables and artifacts. Stages and
//! commands get traits from here and never look at a backend's spelling.

use std::sync::Arc;

use anyhow::{Context, Result};
use cartflow_lake::Lake;
use cartflow_log::{EmbeddedLog, EventLog, LogBackend};
use cartflow_online::{MemoryStore, OnlineBackend, OnlineStore, RedisStore};

use crate::commands::Ctx;
use crate::config::Config;

/// Opens what a [`Config`] names (a trait: the configuration is a crate of
/// its own, free of the backends' builds).
pub trait Backends {
    /// Opens the configured event log.
    fn open_log(&self) -> Result<Box<dyn EventLog>>;
    /// Opens the lake for the lake sink's commits.
    fn open_lake(&self) -> Result<Lake>;
    /// Opens the online store: `online` overrides `features.online`.
    fn open_online(&self, online: Option<&OnlineBackend>) -> Result<Arc<dyn OnlineStore>>;
    /// The registry's store URL and artifact location, defaults under the data
    /// directory (created when they are used).
    fn registry_locations(&self) -> Result<(String, String)>;
}

impl Backends for Config {
    fn open_log(&self) -> Result<Box<dyn EventLog>> {
        match &self.log {
            LogBackend::Embedded => {
                let opts = self.embedded_log.options().map_err(anyhow::Error::msg)?;
                let log = EmbeddedLog::open(self.log_dir(), opts)
                    .with_context(|| format!("opening the event log in {}", self.log_dir().display()))?;
                Ok(Box::new(log))
            }
            #[cfg(feature = "kafka")]
            LogBackend::Kafka { url } => {
                let log = cartflow_log::KafkaLog::connect(url, self.kafka.clone())
                    .with_context(|| format!("connecting to {}", cartflow_core::redact::url(url)))?;
                Ok(Box::new(log))
            }
            #[cfg(not(feature = "kafka"))]
            LogBackend::Kafka { url } => anyhow::bail!(
                "log = {:?}: this cartflow was built without Kafka (cargo feature `kafka`, on by default)",
                cartflow_core::redact::url(url)
            ),
        }
    }

    fn open_lake(&self) -> Result<Lake> {
        let location = self.lake_location();
        Lake::open(&location, cartflow_lake::layout::SINK_WRITER)
            .with_context(|| format!("opening the lake at {location}"))
    }

    fn open_online(&self, online: Option<&OnlineBackend>) -> Result<Arc<dyn OnlineStore>> {
        let f = &self.features;
        match online.unwrap_or(&f.online) {
            OnlineBackend::Embedded => {
                let path = self.data_dir.join("features").join("online.snapshot");
                let store = MemoryStore::open(path.clone(), f.session_ttl())
                    .with_context(|| format!("loading the online store's snapshot {}", path.display()))?;
                Ok(Arc::new(store))
            }
            redis @ OnlineBackend::Redis { url } => {
                let store = RedisStore::open(url, &f.redis_prefix, f.session_ttl())
                    .with_context(|| format!("opening the Redis online store at {}", redis.describe()))?;
                Ok(Arc::new(store))
            }
        }
    }

    fn registry_locations(&self) -> Result<(String, String)> {
        let dir = self.data_dir.join("registry");
        let store = match &self.registry.store {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                format!("sqlite://{}", dir.join("mlflow.db").display())
            }
        };
        let artifacts = self.registry.artifacts.clone().unwrap_or_else(|| dir.join("artifacts").display().to_string());
        Ok((store, artifacts))
    }
}

/// Whether opening a backend failed because its service is away (not up
/// yet, restarting, a disk full) rather than refusing what was asked.
fn is_outage(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<cartflow_log::LogError>().is_some_and(|e| e.is_transient())
            || cause.downcast_ref::<cartflow_online::OnlineError>().is_some_and(|e| e.is_transient())
            || cause.downcast_ref::<cartflow_lake::LakeError>().is_some_and(|e| e.is_transient())
            || cause
                .downcast_ref::<cartflow_registry::RegistryError>()
                .is_some_and(|e| e.code == cartflow_registry::ErrorCode::TemporarilyUnavailable)
    })
}

impl Ctx {
    /// Opens a backend for a long-running stage or server, waiting out its
    /// service's outage with the stages' backoff instead of exiting, as a
    /// running stage rides one out: a process started before its broker,
    /// Redis, S3 server or PostgreSQL (compose without start-order
    /// dependencies, Kubernetes) comes up by itself once they do. Any other
    /// failure (a bad URL, a refused password) ends it at once, as does
    /// Ctrl-C, and so does an outage when `draining` (a run that catches up
    /// and stops is a batch job: it fails and says why).
    pub fn open_when_up<T>(&self, what: &str, draining: bool, mut open: impl FnMut() -> Result<T>) -> Result<T> {
        let mut backoff = cartflow_stream::supervise::Backoff::default();
        loop {
            match open() {
                Err(e) if is_outage(&e) && !draining && !self.control.stopped() => {
                    tracing::warn!("{e:#}; trying {what} again in {:.1} s", backoff.next().as_secs_f64());
                    self.health.set(what, serde_json::json!({ "waiting": format!("{e:#}") }));
                    if !backoff.sleep(&self.control) {
                        return Err(e);
                    }
                }
                opened => {
                    self.health.clear(what);
                    return opened;
                }
            }
        }
    }
}

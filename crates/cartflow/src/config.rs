//! Configuration, layered as users of Arroyo or Vector expect: built-in
//! defaults < `cartflow.toml` (or `--config FILE`) < `CARTFLOW_*` environment
//! variables (`__` separates sections: `CARTFLOW_ALERTS__WEBHOOK_URL`) <
//! command-line flags. Unknown keys are errors, so a typo fails loudly.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cartflow_cdc::CdcConfig;
use cartflow_lake::Lake;
use cartflow_log::{EmbeddedLog, EmbeddedOptions, EventLog, FsyncPolicy, KafkaLog, KafkaOptions};
use cartflow_stream::alerts::AlertConfig;
use cartflow_stream::feature_streamer::StreamerConfig;
use cartflow_stream::lake_sink::LakeSinkConfig;
use cartflow_stream::validator::ValidatorConfig;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where all embedded state lives (log, lake, stores, registry).
    pub data_dir: PathBuf,
    /// The event log: `embedded` (files under the data directory) or `kafka://host:port`.
    pub log: String,
    pub embedded_log: EmbeddedLogConfig,
    pub kafka: KafkaConfig,
    pub validator: ValidatorConfig,
    pub alerts: AlertConfig,
    pub lake: LakeConfig,
    pub lake_sink: LakeSinkConfig,
    pub cdc: CdcConfig,
    pub warehouse: WarehouseConfig,
    pub features: FeaturesConfig,
    pub train: TrainConfig,
    pub registry: RegistryConfig,
    pub serve: ServeConfig,
    pub auth: AuthConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Where `serve` and `run` listen: predictions, features, dashboard, registry, metrics.
    pub addr: String,
    /// The registry alias whose version is served (and followed when it moves).
    pub alias: String,
    /// How often the registry is asked whether the alias moved.
    pub poll_secs: u64,
    /// PEM certificate chain and private key: both given, the server speaks HTTPS only.
    pub tls_cert: String,
    pub tls_key: String,
    /// Largest request body accepted.
    pub max_body_kb: usize,
    /// Requests taking longer are answered 503.
    pub timeout_ms: u64,
    /// A connection that has not sent a whole request head in this long
    /// (slow, silent or idle between requests) is closed.
    pub header_timeout_ms: u64,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: "127.0.0.1:8000".into(),
            alias: "champion".into(),
            poll_secs: 5,
            tls_cert: String::new(),
            tls_key: String::new(),
            max_body_kb: 1024,
            timeout_ms: 10_000,
            header_timeout_ms: 10_000,
            max_connections: 1024,
        }
    }
}

impl ServeConfig {
    /// What one request and one client may cost every server of this process.
    pub fn limits(&self) -> cartflow_http::Limits {
        cartflow_http::Limits {
            max_body_bytes: self.max_body_kb.max(1) << 10,
            timeout: std::time::Duration::from_millis(self.timeout_ms.max(1)),
            header_timeout: std::time::Duration::from_millis(self.header_timeout_ms.max(1)),
            max_connections: self.max_connections.max(1),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// API tokens beside the admin token kept in `<data_dir>/auth/token`:
    /// `[{ name = "shop", token = "…", scopes = ["predict"] }]`; scopes are
    /// predict, features:read, registry:read, registry:write, metrics, admin.
    pub tokens: Vec<cartflow_http::TokenConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// `v1` (the reference design's six features) or `v2` (all).
    pub features: String,
    pub trials: usize,
    /// Trials at once; 0 is one per core.
    pub parallel: usize,
    /// No new trials after this many seconds; 0 is no limit.
    pub timeout_secs: u64,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { features: "v2".into(), trials: 20, parallel: 0, timeout_secs: 0, seed: 42 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Where `train` logs: `embedded` (this data directory's registry, served in-process)
    /// or the URL of an MLflow-compatible tracking server (cartflow's or MLflow's).
    pub url: String,
    /// Where `registry serve` listens (MLflow's default port is 5000; 5001 leaves it free).
    pub addr: String,
    /// The registry's tables: empty is SQLite at `<data_dir>/registry/mlflow.db`, or `postgres://…`.
    pub store: String,
    /// Artifacts: empty is `<data_dir>/registry/artifacts`, or a directory or `s3://bucket/prefix`.
    pub artifacts: String,
    /// The experiment training runs are logged to.
    pub experiment: String,
    /// The registered model new versions go to.
    pub model_name: String,
    /// Largest artifact one upload may put (uploads stream; this bounds disk, not memory).
    pub max_artifact_mb: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            url: "embedded".into(),
            addr: "127.0.0.1:5001".into(),
            store: String::new(),
            artifacts: String::new(),
            experiment: "cart-purchase".into(),
            model_name: "purchase_prediction_model".into(),
            max_artifact_mb: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturesConfig {
    /// The online store: `embedded` (in memory, snapshots under `<data_dir>/features`) or `redis://host:port/db`.
    pub online: String,
    /// Prefix of every Redis key, so stores can share a server.
    pub redis_prefix: String,
    /// A session's visit ends after this long without events.
    pub session_ttl_secs: u64,
    /// Where `features serve` listens (Feast's feature server uses port 6566).
    pub addr: String,
    /// PostgreSQL URL `features build` also loads `feature_store.cart_features` into; empty: the lake only.
    pub postgres: String,
    pub streamer: StreamerConfig,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            online: "embedded".into(),
            redis_prefix: "cartflow".into(),
            session_ttl_secs: 86_400,
            addr: "127.0.0.1:6566".into(),
            postgres: String::new(),
            streamer: StreamerConfig::default(),
        }
    }
}

impl FeaturesConfig {
    pub fn session_ttl(&self) -> cartflow_core::time::Micros {
        self.session_ttl_secs.max(1) as i64 * 1_000_000
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseConfig {
    /// PostgreSQL URL `warehouse export` loads gold into, e.g. `postgres://user@host/db`.
    pub postgres: String,
    /// The PostgreSQL schema it loads into.
    pub schema: String,
    /// Memory queries may use before sorts and aggregations spill to disk.
    pub memory_mb: usize,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig {
            postgres: String::new(),
            schema: "dwh".into(),
            memory_mb: cartflow_warehouse::DEFAULT_MEMORY_MB,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// A directory, `file:///path` or `s3://bucket/prefix`; empty is `<data_dir>/lake`.
    pub location: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedLogConfig {
    /// Partitions of a topic created on first use.
    pub partitions: u32,
    /// `flush` (fsync every flush), `never`, or an interval such as `200ms`.
    pub fsync: String,
    pub segment_mb: u64,
    /// Closed segments older than this are deleted; 0 keeps them.
    pub retention_hours: u64,
    /// Oldest closed segments go while a partition is larger; 0 is no limit.
    pub retention_mb: u64,
}

/// The Kafka backend (`log = "kafka://host:port"`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Partitions of the topics cartflow creates.
    pub partitions: u32,
    /// Replicas of the topics cartflow creates.
    pub replication: i32,
    /// A stage process silent this long loses its partitions to the others of its group.
    pub session_timeout_ms: u32,
    /// librdkafka properties passed as given (`security.protocol`, `sasl.*`, `ssl.*`, tuning).
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        let d = KafkaOptions::default();
        KafkaConfig {
            partitions: d.partitions,
            replication: d.replication,
            session_timeout_ms: d.session_timeout_ms,
            properties: d.properties,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("cartflow-data"),
            log: "embedded".into(),
            embedded_log: EmbeddedLogConfig::default(),
            kafka: KafkaConfig::default(),
            validator: ValidatorConfig::default(),
            alerts: AlertConfig::default(),
            lake: LakeConfig::default(),
            lake_sink: LakeSinkConfig::default(),
            cdc: CdcConfig::default(),
            warehouse: WarehouseConfig::default(),
            features: FeaturesConfig::default(),
            train: TrainConfig::default(),
            registry: RegistryConfig::default(),
            serve: ServeConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

impl Default for EmbeddedLogConfig {
    fn default() -> Self {
        EmbeddedLogConfig {
            partitions: 4,
            fsync: "flush".into(),
            segment_mb: 64,
            retention_hours: 168,
            retention_mb: 0,
        }
    }
}

impl Config {
    /// Loads the layers; `file` is `--config`, else `./cartflow.toml` when present.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) => {
                if !f.exists() {
                    bail!("config file {} does not exist", f.display());
                }
                fig = fig.merge(Toml::file(f));
            }
            None if Path::new("cartflow.toml").exists() => fig = fig.merge(Toml::file("cartflow.toml")),
            None => {}
        }
        fig = fig.merge(Env::prefixed("CARTFLOW_").split("__").ignore(&["config"]));
        fig.extract().context("invalid configuration")
    }

    /// Where the lake is: the configured location or `<data_dir>/lake`.
    pub fn lake_location(&self) -> String {
        if self.lake.location.is_empty() {
            self.data_dir.join("lake").display().to_string()
        } else {
            self.lake.location.clone()
        }
    }

    /// Opens the lake for the lake sink's commits.
    pub fn open_lake(&self) -> Result<Lake> {
        let location = self.lake_location();
        Lake::open(&location, cartflow_lake::layout::SINK_WRITER)
            .with_context(|| format!("opening the lake at {location}"))
    }

    /// Opens the online store: `online` overrides `features.online`.
    pub fn open_online(&self, online: Option<&str>) -> Result<std::sync::Arc<dyn cartflow_online::OnlineStore>> {
        let f = &self.features;
        let url = online.unwrap_or(&f.online);
        if url == "embedded" {
            let path = self.data_dir.join("features").join("online.snapshot");
            let store = cartflow_online::MemoryStore::open(path.clone(), f.session_ttl())
                .with_context(|| format!("loading the online store's snapshot {}", path.display()))?;
            return Ok(std::sync::Arc::new(store));
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            let store = cartflow_online::RedisStore::open(url, &f.redis_prefix, f.session_ttl())
                .with_context(|| format!("opening the Redis online store at {}", cartflow_core::redact::url(url)))?;
            return Ok(std::sync::Arc::new(store));
        }
        bail!("features.online = {:?}: expected `embedded` or `redis://host:port/db`", cartflow_core::redact::url(url))
    }

    /// The registry's store URL and artifact location, defaults under the data directory.
    pub fn registry_locations(&self) -> Result<(String, String)> {
        let dir = self.data_dir.join("registry");
        let store = if self.registry.store.is_empty() {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            format!("sqlite://{}", dir.join("mlflow.db").display())
        } else {
            self.registry.store.clone()
        };
        let artifacts = if self.registry.artifacts.is_empty() {
            dir.join("artifacts").display().to_string()
        } else {
            self.registry.artifacts.clone()
        };
        Ok((store, artifacts))
    }

    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("log")
    }

    /// Opens the configured event log.
    pub fn open_log(&self) -> Result<Box<dyn EventLog>> {
        if self.log == "embedded" {
            let c = &self.embedded_log;
            let fsync: FsyncPolicy = c.fsync.parse().map_err(anyhow::Error::msg).context("embedded_log.fsync")?;
            let opts = EmbeddedOptions {
                default_partitions: c.partitions.max(1),
                fsync,
                segment_bytes: c.segment_mb.max(1) << 20,
                retention_ms: (c.retention_hours > 0).then_some(c.retention_hours * 3_600_000),
                retention_bytes: (c.retention_mb > 0).then_some(c.retention_mb << 20),
            };
            let log = EmbeddedLog::open(self.log_dir(), opts)
                .with_context(|| format!("opening the event log in {}", self.log_dir().display()))?;
            return Ok(Box::new(log));
        }
        if self.log.starts_with("kafka://") {
            let k = &self.kafka;
            let opts = KafkaOptions {
                partitions: k.partitions,
                replication: k.replication,
                session_timeout_ms: k.session_timeout_ms,
                properties: k.properties.clone(),
            };
            let log = KafkaLog::connect(&self.log, opts)
                .with_context(|| format!("connecting to {}", cartflow_core::redact::url(&self.log)))?;
            return Ok(Box::new(log));
        }
        bail!("log = {:?}: expected `embedded` or `kafka://host:port`", self.log)
    }
}

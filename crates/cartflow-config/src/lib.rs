//! Configuration, layered as users of Arroyo or Vector expect: built-in
//! defaults < `cartflow.toml` (or `--config FILE`) < `CARTFLOW_*` environment
//! variables (`__` separates sections: `CARTFLOW_ALERTS__WEBHOOK_URL`) <
//! command-line flags. Unknown keys are errors, so a typo fails loudly.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cartflow_cdc::CdcConfig;
use cartflow_log::{EmbeddedConfig, KafkaOptions, LogBackend};
use cartflow_online::OnlineBackend;
use cartflow_registry::RegistryLocation;
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
    pub log: LogBackend,
    pub embedded_log: EmbeddedConfig,
    pub kafka: KafkaOptions,
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
    pub telemetry: cartflow_trace::TraceConfig,
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
    #[serde(deserialize_with = "optional")]
    pub tls_cert: Option<String>,
    #[serde(deserialize_with = "optional")]
    pub tls_key: Option<String>,
    /// Largest request body accepted.
    pub max_body_kb: usize,
    /// Requests taking longer are answered 503.
    pub timeout_ms: u64,
    /// A connection that has not sent a whole request head in this long
    /// (slow, silent or idle between requests) is closed.
    pub header_timeout_ms: u64,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Share (0–1) of sessions whose `/predict` answers are logged to
    /// `tracking.predictions` on the configured log; 0 logs none.
    pub prediction_log_sample: f64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: "127.0.0.1:8000".into(),
            alias: "champion".into(),
            poll_secs: 5,
            tls_cert: None,
            tls_key: None,
            max_body_kb: 1024,
            timeout_ms: 10_000,
            header_timeout_ms: 10_000,
            max_connections: 1024,
            prediction_log_sample: 1.0,
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
    pub features: cartflow_features::FeatureSet,
    pub trials: usize,
    /// Trials at once; 0 is one per core.
    pub parallel: usize,
    /// No new trials after this many seconds; 0 is no limit.
    pub timeout_secs: u64,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { features: cartflow_features::FeatureSet::V2, trials: 20, parallel: 0, timeout_secs: 0, seed: 42 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Where `train` logs and `serve` follows: `embedded` (this data directory's registry,
    /// served in-process) or the URL of an MLflow-compatible tracking server (cartflow's or MLflow's).
    pub url: RegistryLocation,
    /// Where `registry serve` listens (MLflow's default port is 5000; 5001 leaves it free).
    pub addr: String,
    /// The registry's tables: SQLite at `<data_dir>/registry/mlflow.db` when unset, or `postgres://…`.
    #[serde(deserialize_with = "optional")]
    pub store: Option<String>,
    /// Artifacts: `<data_dir>/registry/artifacts` when unset, or a directory or `s3://bucket/prefix`.
    #[serde(deserialize_with = "optional")]
    pub artifacts: Option<String>,
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
            url: RegistryLocation::Embedded,
            addr: "127.0.0.1:5001".into(),
            store: None,
            artifacts: None,
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
    pub online: OnlineBackend,
    /// Prefix of every Redis key, so stores can share a server.
    pub redis_prefix: String,
    /// A session's visit ends after this long without events.
    pub session_ttl_secs: u64,
    /// Where `features serve` listens (Feast's feature server uses port 6566).
    pub addr: String,
    /// PostgreSQL URL `features build` also loads `feature_store.cart_features` into; unset: the lake only.
    #[serde(deserialize_with = "optional")]
    pub postgres: Option<String>,
    pub streamer: StreamerConfig,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            online: OnlineBackend::Embedded,
            redis_prefix: "cartflow".into(),
            session_ttl_secs: 86_400,
            addr: "127.0.0.1:6566".into(),
            postgres: None,
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
    #[serde(deserialize_with = "optional")]
    pub postgres: Option<String>,
    /// The PostgreSQL schema it loads into.
    pub schema: String,
    /// Memory queries may use before sorts and aggregations spill to disk;
    /// 0, the default, is no limit (`cartflow_warehouse::DEFAULT_MEMORY_MB`,
    /// not referred to: this crate stays clear of DataFusion's build).
    pub memory_mb: usize,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig { postgres: None, schema: "dwh".into(), memory_mb: 0 }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// A directory, `file:///path` or `s3://bucket/prefix`; `<data_dir>/lake` when unset.
    #[serde(deserialize_with = "optional_lake")]
    pub location: Option<cartflow_lake::LakeLocation>,
}

/// The lake's location, where unset or "" is none.
fn optional_lake<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<cartflow_lake::LakeLocation>, D::Error> {
    optional(d)?.map(|s| s.parse().map_err(serde::de::Error::custom)).transpose()
}

/// An optional setting: unset, or set to "" (as `CARTFLOW_FEATURES__POSTGRES=` sets it), is none.
fn optional<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("cartflow-data"),
            log: LogBackend::Embedded,
            embedded_log: EmbeddedConfig::default(),
            kafka: KafkaOptions::default(),
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
            telemetry: cartflow_trace::TraceConfig::default(),
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
        // CARTFLOW_CONFIG, CARTFLOW_LOG_FORMAT and CARTFLOW_HEALTH_URL are the command line's (clap reads them).
        fig = fig.merge(Env::prefixed("CARTFLOW_").split("__").ignore(&["config", "log_format", "health_url"]));
        fig.extract().context("invalid configuration")
    }

    /// The embedded event log's directory.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("log")
    }

    /// Where the lake is: the configured location or `<data_dir>/lake`.
    pub fn lake_location(&self) -> String {
        self.lake
            .location
            .as_ref()
            .map_or_else(|| self.data_dir.join("lake").display().to_string(), ToString::to_string)
    }

    /// The defaults with one file's text over them, as [`Config::load`] reads
    /// a file (without the environment): what the config fuzz target feeds.
    pub fn from_toml(text: &str) -> Result<Config> {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .context("invalid configuration")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped example parses, says what the defaults are, and the layers
    /// win in order: defaults < file < `CARTFLOW_*` (flags are the commands').
    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure returns figment's own error type
    fn the_example_file_is_the_defaults_and_the_layers_win_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("cartflow.toml", include_str!("../../../cartflow.toml.example"))?;
            let example = Config::load(None).map_err(|e| format!("{e:#}"))?;
            let defaults = Config::default();
            let as_json = |c: &Config| serde_json::to_value(c).expect("serializes");
            assert_eq!(as_json(&example), as_json(&defaults), "cartflow.toml.example differs from the defaults");

            jail.create_file(
                "layered.toml",
                "log = \"kafka://k1:9092\"\n[features]\nonline = \"redis://:pw@r:6379/0\"\npostgres = \"\"\n[serve]\naddr = \"0.0.0.0:8000\"\n",
            )?;
            jail.set_env("CARTFLOW_SERVE__ADDR", "127.0.0.1:9000");
            jail.set_env("CARTFLOW_LOG_FORMAT", "json");
            jail.set_env("CARTFLOW_HEALTH_URL", "127.0.0.1:8000");
            jail.set_env("CARTFLOW_REGISTRY__URL", "http://registry:5001");
            let c = Config::load(Some(Path::new("layered.toml"))).map_err(|e| format!("{e:#}"))?;
            assert_eq!(c.log, LogBackend::Kafka { url: "kafka://k1:9092".into() });
            assert_eq!(c.features.online.describe(), "redis://:***@r:6379/0");
            assert_eq!(c.features.postgres, None, "an empty setting is no setting");
            assert_eq!(c.serve.addr, "127.0.0.1:9000", "the environment beats the file");
            assert_eq!(c.registry.url, RegistryLocation::Remote { url: "http://registry:5001".into() });

            jail.set_env("CARTFLOW_LOG", "kafak://typo:9092");
            let e = format!("{:#}", Config::load(Some(Path::new("layered.toml"))).unwrap_err());
            assert!(e.contains("kafka://host:port"), "{e}");
            jail.set_env("CARTFLOW_LOG", "embedded");
            jail.create_file("typo.toml", "[serve]\nadr = \"x\"\n")?;
            let e = format!("{:#}", Config::load(Some(Path::new("typo.toml"))).unwrap_err());
            assert!(e.contains("adr"), "{e}");
            jail.set_env("CARTFLOW_LAKE__LOCATION", "gs://bucket/lake");
            let e = format!("{:#}", Config::load(None).unwrap_err());
            assert!(e.contains("s3://bucket/prefix") && e.to_lowercase().contains("lake.location"), "{e}");
            jail.set_env("CARTFLOW_LAKE__LOCATION", "s3://bucket/lake/");
            let c = Config::load(None).map_err(|e| format!("{e:#}"))?;
            assert_eq!(c.lake_location(), "s3://bucket/lake");
            Ok(())
        });
    }
}

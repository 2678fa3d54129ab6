//! The Kafka backend's settings, parsed whether or not this build has the
//! backend (the `kafka` cargo feature): a configuration file is valid in both.

use std::collections::BTreeMap;

/// The Kafka backend's settings: `[kafka]` in cartflow.toml.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaOptions {
    /// Partitions of topics this backend creates.
    pub partitions: u32,
    /// Replicas of topics this backend creates.
    pub replication: i32,
    /// A group member that stops heartbeating for this long loses its partitions.
    pub session_timeout_ms: u32,
    /// Further librdkafka properties (security, tuning), passed as given
    /// (`security.protocol`, `sasl.*`, `ssl.*`).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions { partitions: 8, replication: 1, session_timeout_ms: 10_000, properties: BTreeMap::new() }
    }
}

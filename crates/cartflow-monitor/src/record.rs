//! The prediction log's records (topic `tracking.predictions`): what
//! `serve` writes for each scored cart and the monitor reads back, as JSON.

use serde::{Deserialize, Serialize};

/// The topic predictions are logged to.
pub const TOPIC: &str = "tracking.predictions";

/// One scored cart event, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedPrediction {
    /// The request's id: its `x-request-id` header, or one made up.
    pub request_id: String,
    /// When it was answered, µs since the epoch.
    pub time: i64,
    pub model: ModelVersion,
    pub user_id: i64,
    pub product_id: i64,
    /// Without one, no outcome can be joined to it.
    pub user_session: Option<String>,
    /// The time the features were taken at, µs since the epoch: the cart's
    /// `event_time` when given, else the newest event the store held.
    pub event_time: i64,
    /// The model's inputs by name, as scored (`null`: missing).
    pub inputs: serde_json::Map<String, serde_json::Value>,
    pub probability: f64,
    pub will_purchase: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub alias: String,
}

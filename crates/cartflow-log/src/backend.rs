//! Which log a process uses, as a type: configuration spells it
//! `embedded` or `kafka://host:port[,host:port]`, code matches on it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LogBackend {
    /// Segment files under the data directory.
    Embedded,
    /// A Kafka cluster, by its `kafka://` URL (credentials go in `[kafka] properties`).
    Kafka { url: String },
}

impl FromStr for LogBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embedded" => Ok(Self::Embedded),
            url if url.strip_prefix("kafka://").is_some_and(|b| !b.trim_matches('/').is_empty()) => {
                Ok(Self::Kafka { url: url.to_owned() })
            }
            other => Err(format!("{other:?}: expected `embedded` or `kafka://host:port`")),
        }
    }
}

impl fmt::Display for LogBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded"),
            Self::Kafka { url } => f.write_str(url),
        }
    }
}

cartflow_core::serde_as_string!(LogBackend);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_configurations_spelling() {
        assert_eq!("embedded".parse(), Ok(LogBackend::Embedded));
        let kafka: LogBackend = "kafka://a:9092,b:9092".parse().unwrap();
        assert_eq!(kafka.to_string(), "kafka://a:9092,b:9092");
        for bad in ["", "kafka://", "kafka:", "redis://x", "Embedded"] {
            assert!(bad.parse::<LogBackend>().unwrap_err().contains("expected"), "{bad}");
        }
    }
}

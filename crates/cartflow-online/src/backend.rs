//! Which online store a process uses, as a type: configuration spells it
//! `embedded`, `redis://…` / `rediss://…` (one server) or
//! `redis+cluster://host:port,…` (a Redis Cluster), code matches on it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum OnlineBackend {
    /// In this process's memory, with snapshots under the data directory:
    /// the process that serves it must run its streamer.
    Embedded,
    /// A Redis server or cluster, by URL (a password in it is never printed:
    /// [`OnlineBackend::describe`]).
    Redis { url: String },
}

impl OnlineBackend {
    pub fn is_embedded(&self) -> bool {
        matches!(self, Self::Embedded)
    }

    /// For messages: the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Self::Embedded => "embedded".into(),
            Self::Redis { url } => cartflow_core::redact::url(url),
        }
    }
}

impl FromStr for OnlineBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embedded" => Ok(Self::Embedded),
            url if ["redis://", "rediss://"].iter().chain(&crate::CLUSTER_SCHEMES).any(|s| url.starts_with(s)) => {
                Ok(Self::Redis { url: url.to_owned() })
            }
            other => Err(format!(
                "{:?}: expected `embedded`, `redis://host:port/db` or `redis+cluster://host:port,host:port`",
                cartflow_core::redact::url(other)
            )),
        }
    }
}

impl fmt::Display for OnlineBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded"),
            Self::Redis { url } => f.write_str(url),
        }
    }
}

cartflow_core::serde_as_string!(OnlineBackend);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_configurations_spelling_and_never_shows_a_password() {
        assert!("embedded".parse::<OnlineBackend>().unwrap().is_embedded());
        let redis: OnlineBackend = "rediss://:pw@h:6380/1".parse().unwrap();
        assert_eq!(redis.describe(), "rediss://:***@h:6380/1");
        assert_eq!(redis.to_string(), "rediss://:pw@h:6380/1");
        let cluster: OnlineBackend = "redis+cluster://:pw@h:7000,h:7001".parse().unwrap();
        assert!(!cluster.describe().contains("pw"), "{}", cluster.describe());
        let err = "memcached://:pw@h".parse::<OnlineBackend>().unwrap_err();
        assert!(err.contains("expected") && !err.contains("pw"), "{err}");
    }
}

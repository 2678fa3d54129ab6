//! Which registry a process logs to and follows, as a type: configuration
//! spells it `embedded` (this data directory's, served in-process) or the
//! `http(s)://` URL of an MLflow-compatible tracking server.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RegistryLocation {
    Embedded,
    /// cartflow's `registry serve` or MLflow's `mlflow server`.
    Remote {
        url: String,
    },
}

impl RegistryLocation {
    pub fn is_embedded(&self) -> bool {
        matches!(self, Self::Embedded)
    }

    /// For messages, without credentials.
    pub fn describe(&self) -> String {
        match self {
            Self::Embedded => "the embedded registry".into(),
            Self::Remote { url } => cartflow_core::redact::url(url),
        }
    }
}

impl FromStr for RegistryLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embedded" => Ok(Self::Embedded),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(Self::Remote { url: url.trim_end_matches('/').to_owned() })
            }
            other => {
                Err(format!("{:?}: expected `embedded` or http(s)://host:port", cartflow_core::redact::url(other)))
            }
        }
    }
}

impl fmt::Display for RegistryLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded"),
            Self::Remote { url } => f.write_str(url),
        }
    }
}

cartflow_core::serde_as_string!(RegistryLocation);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_configurations_spelling() {
        assert!("embedded".parse::<RegistryLocation>().unwrap().is_embedded());
        let remote: RegistryLocation = "http://127.0.0.1:5001/".parse().unwrap();
        assert_eq!(remote.to_string(), "http://127.0.0.1:5001");
        assert!("127.0.0.1:5001".parse::<RegistryLocation>().unwrap_err().contains("expected"));
    }
}

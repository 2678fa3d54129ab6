//! Where a lake is: a local directory or an S3 bucket and prefix. Parsed once,
//! from configuration or a flag, so a misspelt location fails before anything
//! runs; spelt as one string (`/data/lake`, `file:///data/lake`,
//! `s3://bucket/prefix`) in both.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LakeLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

cartflow_core::serde_as_string!(LakeLocation);

impl FromStr for LakeLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("no bucket (s3://bucket/prefix)".to_owned());
            }
            return Ok(LakeLocation::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() });
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if path.is_empty() || path.contains("://") {
            return Err("expected a directory, file:///path or s3://bucket/prefix".to_owned());
        }
        Ok(LakeLocation::Local(PathBuf::from(path)))
    }
}

impl fmt::Display for LakeLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LakeLocation::Local(path) => write!(f, "{}", path.display()),
            LakeLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            LakeLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_print_back() {
        for (given, shown) in [
            ("/data/lake", "/data/lake"),
            ("file:///data/lake", "/data/lake"),
            ("relative/lake", "relative/lake"),
            ("s3://bucket", "s3://bucket"),
            ("s3://bucket/a/b/", "s3://bucket/a/b"),
        ] {
            let location: LakeLocation = given.parse().unwrap();
            assert_eq!(location.to_string(), shown, "{given}");
            assert_eq!(shown.parse::<LakeLocation>().unwrap(), location, "{shown} round-trips");
        }
        for bad in ["", "s3://", "s3:///prefix", "gs://bucket/lake", "http://host/lake"] {
            assert!(bad.parse::<LakeLocation>().is_err(), "{bad:?} parsed");
        }
    }
}

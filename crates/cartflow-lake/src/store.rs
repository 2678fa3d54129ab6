//! Opens the object store a lake location names: a directory path (or
//! `file:///…`), or `s3://bucket[/prefix]` configured by the usual AWS
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` for MinIO and other S3-compatible servers,
//! `AWS_ALLOW_HTTP=true` for plain HTTP ones).

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;

use crate::{LakeError, LakeLocation, Result};

pub fn open_store(location: &str) -> Result<Arc<dyn ObjectStore>> {
    let (root, prefix) = open_store_root(location)?;
    Ok(if prefix.is_empty() { root } else { Arc::new(PrefixStore::new(root, prefix)) })
}

/// The store a location lives in, at its root, and the location's prefix
/// inside it (empty for a directory).
///
/// For DataFusion: object_store 0.13's `PrefixStore` leaves the prefix on
/// the path `head` returns, so a listing table over a single file behind it
/// finds nothing; the warehouse gives DataFusion the root and the prefix.
pub fn open_store_root(location: &str) -> Result<(Arc<dyn ObjectStore>, String)> {
    let bad = |why: String| LakeError::Location(location.to_owned(), why);
    match location.parse::<LakeLocation>().map_err(bad)? {
        LakeLocation::S3 { bucket, prefix } => {
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
                builder = builder.with_region("us-east-1");
            }
            let s3 = builder.build().map_err(|e| bad(e.to_string()))?;
            Ok((Arc::new(s3), prefix))
        }
        LakeLocation::Local(path) => {
            std::fs::create_dir_all(&path).map_err(|e| bad(e.to_string()))?;
            let local = LocalFileSystem::new_with_prefix(&path).map_err(|e| bad(e.to_string()))?;
            Ok((Arc::new(local), String::new()))
        }
    }
}

/// The directory a local location names (a path or `file:///…`), if it is one.
pub fn local_dir(location: &str) -> Option<&str> {
    match location.strip_prefix("file://") {
        Some(path) => Some(path),
        None if location.contains("://") => None,
        None => Some(location),
    }
}

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

use crate::{LakeError, Result};

pub fn open_store(location: &str) -> Result<Arc<dyn ObjectStore>> {
    let bad = |why: String| LakeError::Location(location.to_owned(), why);
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket".into()));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            builder = builder.with_region("us-east-1");
        }
        let s3 = builder.build().map_err(|e| bad(e.to_string()))?;
        let prefix = prefix.trim_matches('/');
        return Ok(if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix)) });
    }
    if location.contains("://") && !location.starts_with("file://") {
        return Err(bad("expected a directory, file:///path or s3://bucket/prefix".into()));
    }
    let path = location.strip_prefix("file://").unwrap_or(location);
    std::fs::create_dir_all(path).map_err(|e| bad(e.to_string()))?;
    let local = LocalFileSystem::new_with_prefix(path).map_err(|e| bad(e.to_string()))?;
    Ok(Arc::new(local))
}

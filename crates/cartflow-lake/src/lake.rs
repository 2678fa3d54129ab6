//! Committing files to the lake exactly once: a write-ahead manifest.
//!
//! A commit covers whole input ranges `[start, end)` of each partition read.
//! Its files are derived from those ranges alone — one file per table and
//! hour, rows in (partition, offset) order, a name from the commit number —
//! so the same ranges always give the same files, byte for byte.
//!
//! 1. encode the files in memory;
//! 2. put the manifest `_manifests/<writer>/<seq>.json` (ranges + files):
//!    this is the commit point;
//! 3. put the files.
//!
//! A writer that dies before 2 has committed nothing and leaves nothing
//! behind; one that dies during 3 leaves a manifest whose files are partly
//! there, and its successor re-reads the ranges and puts the missing files
//! again. No file ever exists that no manifest names, and each input record
//! is in exactly one file. (On a directory, object_store writes each file as
//! a staging file `<name>#<n>` and renames it; a kill can leave that staging
//! file behind. Readers never see it, and the successor removes it.)

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::layout::{EVENTS, INVALID, data_file, hour_partition, manifest_dir, manifest_file};
use crate::manifest::{FileEntry, Manifest};
use crate::schema::{LakeEvent, LakeInvalid, events_batch, invalid_batch};
use crate::store::{local_dir, open_store};
use crate::{LakeError, Result};

/// A file encoded and ready to put.
#[derive(Debug, Clone)]
pub struct PendingFile {
    pub path: String,
    pub bytes: Bytes,
    pub rows: u64,
}

pub struct Lake {
    store: Arc<dyn ObjectStore>,
    location: String,
    /// The directory of a local lake, where staging files can be left.
    local_root: Option<std::path::PathBuf>,
    writer: String,
    rt: &'static tokio::runtime::Runtime,
}

impl Lake {
    /// Opens the lake at `location` for the writer named `writer` (its manifests' folder).
    pub fn open(location: &str, writer: &str) -> Result<Self> {
        let store = open_store(location)?;
        let rt = crate::runtime();
        let local_root = local_dir(location).map(std::path::PathBuf::from);
        Ok(Lake { store, location: location.to_owned(), writer: writer.to_owned(), local_root, rt })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    fn store_err(&self, cause: object_store::Error) -> LakeError {
        LakeError::Store { location: self.location.clone(), cause }
    }

    /// This writer's newest manifest.
    pub fn latest_manifest(&self) -> Result<Option<Manifest>> {
        let prefix = Path::from(manifest_dir(&self.writer));
        let metas: Vec<_> =
            self.rt.block_on(self.store.list(Some(&prefix)).try_collect()).map_err(|e| self.store_err(e))?;
        let Some(newest) =
            metas.iter().filter(|m| m.location.as_ref().ends_with(".json")).max_by_key(|m| m.location.clone())
        else {
            return Ok(None);
        };
        let bytes = self
            .rt
            .block_on(async { self.store.get(&newest.location).await?.bytes().await })
            .map_err(|e| self.store_err(e))?;
        let m = serde_json::from_slice(&bytes)
            .map_err(|e| LakeError::Manifest { path: newest.location.to_string(), message: e.to_string() })?;
        Ok(Some(m))
    }

    /// Encodes one commit's rows: one Parquet file per table and hour. Pure
    /// and deterministic: the same rows give the same bytes.
    pub fn encode(seq: u64, events: &[LakeEvent], invalid: &[LakeInvalid]) -> Result<Vec<PendingFile>> {
        let mut out = Vec::new();
        let mut by_hour: BTreeMap<String, Vec<&LakeEvent>> = BTreeMap::new();
        for e in events {
            by_hour.entry(hour_partition(e.event.event_time)).or_default().push(e);
        }
        for (hour, mut rows) in by_hour {
            rows.sort_by_key(|r| (r.partition, r.offset));
            out.push(encode_parquet(data_file(EVENTS, &hour, seq), &[events_batch(&rows)])?);
        }
        let mut by_hour: BTreeMap<String, Vec<&LakeInvalid>> = BTreeMap::new();
        for r in invalid {
            by_hour.entry(hour_partition(r.received_ms * 1000)).or_default().push(r);
        }
        for (hour, mut rows) in by_hour {
            rows.sort_by_key(|r| (r.partition, r.offset));
            out.push(encode_parquet(data_file(INVALID, &hour, seq), &[invalid_batch(&rows)])?);
        }
        Ok(out)
    }

    /// Commits `files` as commit `seq` covering `inputs`: manifest first, then files.
    pub fn commit(&self, seq: u64, inputs: BTreeMap<String, [u64; 2]>, files: &[PendingFile]) -> Result<Manifest> {
        let manifest = Manifest {
            seq,
            created_ms: cartflow_core::time::now_micros() / 1000,
            inputs,
            files: files
                .iter()
                .map(|f| FileEntry { path: f.path.clone(), rows: f.rows, bytes: f.bytes.len() as u64 })
                .collect(),
        };
        let body = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        let path = Path::from(manifest_file(&self.writer, seq));
        self.rt.block_on(self.store.put(&path, PutPayload::from(body))).map_err(|e| self.store_err(e))?;
        self.put_files(files)?;
        Ok(manifest)
    }

    /// Puts files (concurrently); overwriting one with the same bytes is harmless.
    pub fn put_files(&self, files: &[PendingFile]) -> Result<()> {
        let puts = files.iter().map(|f| async move {
            self.store.put(&Path::from(f.path.as_str()), PutPayload::from(f.bytes.clone())).await
        });
        self.rt.block_on(futures::future::try_join_all(puts)).map_err(|e| self.store_err(e))?;
        Ok(())
    }

    /// Files a manifest names that are not (all there) in the store.
    pub fn missing_files(&self, m: &Manifest) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        for f in &m.files {
            match self.rt.block_on(self.store.head(&Path::from(f.path.as_str()))) {
                Ok(meta) if meta.size == f.bytes => {}
                Ok(_) | Err(object_store::Error::NotFound { .. }) => missing.push(f.path.clone()),
                Err(e) => return Err(self.store_err(e)),
            }
        }
        Ok(missing)
    }

    /// Removes the staging files (`<name>#<n>`) a killed writer left while
    /// putting the files of its last commit or the manifest after it (the
    /// first manifest when there is no commit yet): the only puts a kill can
    /// interrupt, since every earlier commit was complete before the next
    /// began. object_store hides these files from its own listings, so they
    /// are found on the file system. Returns how many were removed.
    pub fn remove_staging_files(&self, last: Option<&Manifest>) -> Result<u64> {
        let Some(root) = &self.local_root else { return Ok(0) };
        let io_err = |e: std::io::Error| LakeError::Location(self.location.clone(), format!("staging files: {e}"));
        let mut by_dir: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let next = manifest_file(&self.writer, last.map_or(0, |m| m.seq) + 1);
        let files = last.into_iter().flat_map(|m| &m.files).map(|f| f.path.as_str());
        for path in files.chain([next.as_str()]) {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            by_dir.entry(dir).or_default().push(name);
        }
        let mut removed = 0;
        for (dir, names) in by_dir {
            let entries = match std::fs::read_dir(root.join(dir)) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err)?;
                let file = entry.file_name();
                let Some((name, n)) = file.to_str().and_then(|f| f.rsplit_once('#')) else { continue };
                if names.contains(&name) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                    std::fs::remove_file(entry.path()).map_err(io_err)?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Every data file under a table, for tests and tools.
    pub fn list_files(&self, table: &str) -> Result<Vec<String>> {
        let prefix = Path::from(table);
        let metas: Vec<_> =
            self.rt.block_on(self.store.list(Some(&prefix)).try_collect()).map_err(|e| self.store_err(e))?;
        let mut files: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
        files.sort();
        Ok(files)
    }

    /// Reads a whole object (tests and tools).
    pub fn get(&self, path: &str) -> Result<Bytes> {
        self.rt
            .block_on(async { self.store.get(&Path::from(path)).await?.bytes().await })
            .map_err(|e| self.store_err(e))
    }
}

/// One Parquet file (zstd, row groups of up to a million rows) from batches
/// of one schema; the same batches always give the same bytes.
pub fn encode_parquet(path: String, batches: &[arrow_array::RecordBatch]) -> Result<PendingFile> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let schema = batches.first().map(|b| b.schema()).ok_or_else(|| {
        LakeError::Arrow(arrow_schema::ArrowError::InvalidArgumentError(format!("{path}: no batches to write")))
    })?;
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(props))?;
    let mut rows = 0;
    for batch in batches {
        writer.write(batch)?;
        rows += batch.num_rows() as u64;
    }
    let bytes = writer.into_inner()?;
    Ok(PendingFile { path, rows, bytes: Bytes::from(bytes) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successor_removes_the_staging_files_of_the_last_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), "w").unwrap();
        // A kill during the very first commit's manifest.
        std::fs::create_dir_all(dir.path().join("_manifests/w")).unwrap();
        std::fs::write(dir.path().join("_manifests/w/000000000001.json#1"), b"half").unwrap();
        assert_eq!(lake.remove_staging_files(None).unwrap(), 1);
        let file = |path: &str| PendingFile { path: path.into(), bytes: Bytes::from_static(b"rows"), rows: 1 };
        let part = "events/year=2019/month=10/day=01/hour=00/part-000000000001.parquet";
        let m = lake.commit(1, BTreeMap::new(), &[file(part)]).unwrap();
        let touch = |rel: &str| std::fs::write(dir.path().join(rel), b"half").unwrap();
        let left = [format!("{part}#1"), format!("{part}#2"), "_manifests/w/000000000002.json#1".into()];
        let kept = [format!("{part}#x"), "events/year=2019/month=10/day=01/hour=00/other.parquet#1".into()];
        for f in left.iter().chain(&kept) {
            touch(f);
        }
        assert_eq!(lake.remove_staging_files(Some(&m)).unwrap(), 3);
        for f in &left {
            assert!(!dir.path().join(f).exists(), "{f} should be gone");
        }
        for f in kept.iter().map(String::as_str).chain([part, "_manifests/w/000000000001.json"]) {
            assert!(dir.path().join(f).exists(), "{f} should be kept");
        }
        // An S3 lake has no staging files: object_store puts objects whole.
        assert_eq!(local_dir("s3://bucket/lake"), None);
        assert_eq!(local_dir("file:///tmp/lake"), Some("/tmp/lake"));
    }
}

//! Committing files to the lake exactly once: a write-ahead manifest per
//! input partition, so any number of writers, each holding some partitions
//! (a consumer group's members), share one lake with no coordination but
//! the group's.
//!
//! A commit covers one whole input range `[start, end)` of one partition.
//! Its files are derived from that range alone — one file per table and
//! hour, rows in offset order, named by the partition and `start` — so the
//! same range always gives the same files, byte for byte.
//!
//! 1. encode the files in memory;
//! 2. create the manifest `_manifests/<writer>/<topic>+<partition>/<start>.json`
//!    (range + files), only if no manifest of that name exists: this is the
//!    commit point, and the condition fences off a writer that lost the
//!    partition to another but does not know it yet;
//! 3. put the files.
//!
//! A writer that dies before 2 has committed nothing and leaves nothing
//! behind; one that dies during 3 leaves a manifest whose files are partly
//! there, and the partition's next owner re-reads the range and puts the
//! missing files again. No file ever exists that no manifest names, and each
//! input record is in exactly one file. (On a directory, object_store writes
//! each file as a staging file `<name>#<n>` and renames it; a kill can leave
//! that staging file behind. Readers never see it, and the successor removes it.)

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::layout::{EVENTS, INVALID, data_file, hour_partition, manifest_dir, manifest_file, writer_dir};
use crate::manifest::{FileEntry, Manifest, SingleWriterManifest};
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

    /// The newest commit of one input partition.
    pub fn latest_manifest(&self, topic: &str, partition: u32) -> Result<Option<Manifest>> {
        let newest = self.list_json(&manifest_dir(&self.writer, topic, partition))?.into_iter().max();
        newest.map(|path| self.read_json(&path)).transpose()
    }

    /// Where each input partition's next commit starts (`topic/partition` →
    /// offset): the end of its newest commit.
    pub fn committed_offsets(&self) -> Result<BTreeMap<String, u64>> {
        let mut newest: BTreeMap<String, Path> = BTreeMap::new();
        let mut single_writer: Option<Path> = None;
        let root = writer_dir(&self.writer);
        for path in self.list_json(&root)? {
            let Some(rel) = path.as_ref().strip_prefix(root.as_str()).map(|r| r.trim_start_matches('/')) else {
                continue;
            };
            match rel.split_once('/') {
                Some((dir, _)) => {
                    let slot = newest.entry(dir.to_owned()).or_insert_with(|| path.clone());
                    if path > *slot {
                        *slot = path;
                    }
                }
                None => single_writer = single_writer.max(Some(path)),
            }
        }
        let mut out = self.single_writer_offsets(single_writer)?;
        for path in newest.into_values() {
            let m: Manifest = self.read_json(&path)?;
            out.insert(m.input(), m.end);
        }
        Ok(out)
    }

    /// Where a partition resumes when it has no commit of its own yet: the
    /// end of its range in a lake written by the earlier single-writer layout.
    pub fn single_writer_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        // That layout's manifests sit directly in the writer's folder, beside the partitions' folders.
        let root = Path::from(writer_dir(&self.writer));
        let listed = self.rt.block_on(self.store.list_with_delimiter(Some(&root))).map_err(|e| self.store_err(e))?;
        let newest = listed.objects.into_iter().map(|m| m.location).filter(|p| p.as_ref().ends_with(".json")).max();
        Ok(self.single_writer_offsets(newest)?.get(&format!("{topic}/{partition}")).copied().unwrap_or(0))
    }

    fn single_writer_offsets(&self, newest: Option<Path>) -> Result<BTreeMap<String, u64>> {
        let Some(path) = newest else { return Ok(BTreeMap::new()) };
        let m: SingleWriterManifest = self.read_json(&path)?;
        Ok(m.inputs.into_iter().map(|(tp, [_, end])| (tp, end)).collect())
    }

    /// Every `.json` object under `prefix`.
    fn list_json(&self, prefix: &str) -> Result<Vec<Path>> {
        let prefix = Path::from(prefix);
        let metas: Vec<_> =
            self.rt.block_on(self.store.list(Some(&prefix)).try_collect()).map_err(|e| self.store_err(e))?;
        Ok(metas.into_iter().map(|m| m.location).filter(|p| p.as_ref().ends_with(".json")).collect())
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<T> {
        let bytes =
            self.rt.block_on(async { self.store.get(path).await?.bytes().await }).map_err(|e| self.store_err(e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| LakeError::Manifest { path: path.to_string(), message: e.to_string() })
    }

    /// Encodes one commit of one input partition: a Parquet file per table
    /// and hour. Pure and deterministic: the same rows give the same bytes.
    pub fn encode(
        topic: &str,
        partition: u32,
        start: u64,
        events: &[LakeEvent],
        invalid: &[LakeInvalid],
    ) -> Result<Vec<PendingFile>> {
        let file = |table: &str, hour: &str| data_file(table, hour, topic, partition, start);
        let mut out = Vec::new();
        let mut by_hour: BTreeMap<String, Vec<&LakeEvent>> = BTreeMap::new();
        for e in events {
            by_hour.entry(hour_partition(e.event.event_time)).or_default().push(e);
        }
        for (hour, mut rows) in by_hour {
            rows.sort_by_key(|r| (r.partition, r.offset));
            out.push(encode_parquet(file(EVENTS, &hour), &[events_batch(&rows)])?);
        }
        let mut by_hour: BTreeMap<String, Vec<&LakeInvalid>> = BTreeMap::new();
        for r in invalid {
            by_hour.entry(hour_partition(r.received_ms * 1000)).or_default().push(r);
        }
        for (hour, mut rows) in by_hour {
            rows.sort_by_key(|r| (r.partition, r.offset));
            out.push(encode_parquet(file(INVALID, &hour), &[invalid_batch(&rows)])?);
        }
        Ok(out)
    }

    /// Commits `files` as the records `[start, end)` of `topic`/`partition`:
    /// the manifest first, created only if no commit of this partition
    /// started at `start` already, then the files.
    pub fn commit(
        &self,
        topic: &str,
        partition: u32,
        [start, end]: [u64; 2],
        files: &[PendingFile],
    ) -> Result<Manifest> {
        let manifest = Manifest {
            topic: topic.to_owned(),
            partition,
            start,
            end,
            created_ms: cartflow_core::time::now_micros() / 1000,
            files: files
                .iter()
                .map(|f| FileEntry { path: f.path.clone(), rows: f.rows, bytes: f.bytes.len() as u64 })
                .collect(),
        };
        let body = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        let path = Path::from(manifest_file(&self.writer, topic, partition, start));
        let create = PutOptions::from(PutMode::Create);
        match self.rt.block_on(self.store.put_opts(&path, PutPayload::from(body), create)) {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(LakeError::Taken { manifest: path.to_string() });
            }
            Err(e) => return Err(self.store_err(e)),
        }
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
    /// putting the files of a partition's last commit or the manifest after
    /// it (at `next`, where the partition resumes): the only puts of this
    /// partition a kill can interrupt, since every earlier commit of it was
    /// complete before the next began. object_store hides these files from
    /// its own listings, so they are found on the file system. Returns how
    /// many were removed.
    pub fn remove_staging_files(&self, topic: &str, partition: u32, last: Option<&Manifest>, next: u64) -> Result<u64> {
        let Some(root) = &self.local_root else { return Ok(0) };
        let io_err = |e: std::io::Error| LakeError::Location(self.location.clone(), format!("staging files: {e}"));
        let mut by_dir: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        // The last manifest's own staging file too: a create links it, then removes it.
        let manifests: Vec<String> = last
            .map(|m| m.start)
            .into_iter()
            .chain([next])
            .map(|at| manifest_file(&self.writer, topic, partition, at))
            .collect();
        let files = last.into_iter().flat_map(|m| &m.files).map(|f| f.path.as_str());
        for path in files.chain(manifests.iter().map(String::as_str)) {
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

    fn file(path: &str) -> PendingFile {
        PendingFile { path: path.into(), bytes: Bytes::from_static(b"rows"), rows: 1 }
    }

    const HOUR: &str = "year=2019/month=10/day=01/hour=00";

    #[test]
    fn a_successor_removes_the_staging_files_of_the_last_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), "w").unwrap();
        // A kill during the partition's very first manifest.
        std::fs::create_dir_all(dir.path().join("_manifests/w/t+0")).unwrap();
        std::fs::write(dir.path().join(format!("{}#1", manifest_file("w", "t", 0, 0))), b"half").unwrap();
        assert_eq!(lake.remove_staging_files("t", 0, None, 0).unwrap(), 1);
        let part = data_file(EVENTS, HOUR, "t", 0, 0);
        let m = lake.commit("t", 0, [0, 5], &[file(&part)]).unwrap();
        let touch = |rel: &str| std::fs::write(dir.path().join(rel), b"half").unwrap();
        let left = [
            format!("{part}#1"),
            format!("{part}#2"),
            format!("{}#1", manifest_file("w", "t", 0, 5)),
            format!("{}#3", manifest_file("w", "t", 0, 0)),
        ];
        let kept = [format!("{part}#x"), format!("events/{HOUR}/other.parquet#1")];
        for f in left.iter().chain(&kept) {
            touch(f);
        }
        assert_eq!(lake.remove_staging_files("t", 0, Some(&m), 5).unwrap(), 4);
        for f in &left {
            assert!(!dir.path().join(f).exists(), "{f} should be gone");
        }
        for f in kept.iter().cloned().chain([part, manifest_file("w", "t", 0, 0)]) {
            assert!(dir.path().join(&f).exists(), "{f} should be kept");
        }
        // An S3 lake has no staging files: object_store puts objects whole.
        assert_eq!(local_dir("s3://bucket/lake"), None);
        assert_eq!(local_dir("file:///tmp/lake"), Some("/tmp/lake"));
    }

    #[test]
    fn partitions_commit_on_their_own_and_a_range_is_committed_once() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), "w").unwrap();
        lake.commit("t", 0, [0, 5], &[file(&data_file(EVENTS, HOUR, "t", 0, 0))]).unwrap();
        lake.commit("t", 0, [5, 9], &[file(&data_file(EVENTS, HOUR, "t", 0, 5))]).unwrap();
        lake.commit("t", 1, [0, 3], &[file(&data_file(EVENTS, HOUR, "t", 1, 0))]).unwrap();
        let offsets = lake.committed_offsets().unwrap();
        assert_eq!(offsets, BTreeMap::from([("t/0".into(), 9), ("t/1".into(), 3)]));
        assert_eq!(lake.latest_manifest("t", 0).unwrap().unwrap().start, 5);
        assert_eq!(lake.latest_manifest("t", 2).unwrap(), None);
        // A writer that lost partition 1 and commits from where it last knew: fenced off.
        let stale = data_file(EVENTS, HOUR, "t", 1, 0);
        let err = lake.commit("t", 1, [0, 7], &[file(&stale)]).unwrap_err();
        assert!(matches!(err, LakeError::Taken { .. }), "{err}");
        assert_eq!(lake.committed_offsets().unwrap()["t/1"], 3);
    }

    #[test]
    fn a_lake_of_the_single_writer_layout_carries_on_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), "w").unwrap();
        std::fs::create_dir_all(dir.path().join("_manifests/w")).unwrap();
        for (seq, end) in [(1, 4), (2, 10)] {
            let body = format!(r#"{{"seq": {seq}, "created_ms": 0, "inputs": {{"t/0": [0, {end}]}}, "files": []}}"#);
            std::fs::write(dir.path().join(format!("_manifests/w/{seq:012}.json")), body).unwrap();
        }
        assert_eq!(lake.single_writer_offset("t", 0).unwrap(), 10);
        assert_eq!(lake.single_writer_offset("t", 1).unwrap(), 0);
        lake.commit("t", 1, [0, 2], &[]).unwrap();
        assert_eq!(lake.committed_offsets().unwrap(), BTreeMap::from([("t/0".into(), 10), ("t/1".into(), 2)]));
    }
}

//! Consumer groups of the embedded log: one JSON file of committed offsets per
//! group, replaced atomically on every commit, and a lock file that admits one
//! active member per group (the embedded log has no rebalancing; Kafka does).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use super::writer::sync_dir;
use crate::error::{IoContext, LogError, Result};
use crate::{CommittedOffset, GroupInfo};

pub(crate) struct Groups {
    dir: PathBuf,
}

impl Groups {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Groups { dir }
    }

    /// Takes the group's membership lock; it is released when the file closes,
    /// including when the process dies.
    pub(crate) fn join(&self, group: &str) -> Result<File> {
        std::fs::create_dir_all(&self.dir).at(&self.dir)?;
        let path = self.dir.join(format!("{group}.lock"));
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).at(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(LogError::GroupBusy(group.to_owned())),
            Err(std::fs::TryLockError::Error(e)) => Err(e).at(path),
        }
    }

    pub(crate) fn load(&self, group: &str) -> Result<Vec<CommittedOffset>> {
        let path = self.dir.join(format!("{group}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| LogError::Corrupt { path, message: format!("committed offsets: {e}") }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).at(path),
        }
    }

    /// Merges `offsets` into the group's committed offsets, durably.
    pub(crate) fn store(&self, group: &str, offsets: &[CommittedOffset]) -> Result<()> {
        let mut all: BTreeMap<(String, u32), CommittedOffset> =
            self.load(group)?.into_iter().map(|c| ((c.topic.clone(), c.partition), c)).collect();
        for c in offsets {
            all.insert((c.topic.clone(), c.partition), c.clone());
        }
        self.write(group, &all.values().collect::<Vec<_>>())
    }

    /// The groups with a running member (their lock is held).
    pub(crate) fn running(&self) -> Result<Vec<String>> {
        let mut busy = Vec::new();
        for g in self.list()? {
            let path = self.dir.join(format!("{}.lock", g.group));
            let Ok(file) = OpenOptions::new().write(true).open(&path) else { continue };
            if matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)) {
                busy.push(g.group);
            }
        }
        Ok(busy)
    }

    /// Removes every group's committed offsets of `topic`.
    pub(crate) fn forget(&self, topic: &str) -> Result<()> {
        for g in self.list()? {
            if g.offsets.iter().any(|c| c.topic == topic) {
                let kept: Vec<CommittedOffset> = g.offsets.into_iter().filter(|c| c.topic != topic).collect();
                self.write(&g.group, &kept.iter().collect::<Vec<_>>())?;
            }
        }
        Ok(())
    }

    fn write(&self, group: &str, list: &[&CommittedOffset]) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(list).expect("offsets serialize");
        let path = self.dir.join(format!("{group}.json"));
        let tmp = self.dir.join(format!(".{group}.json.tmp"));
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(&bytes).and_then(|_| f.sync_data()).at(&tmp)?;
        std::fs::rename(&tmp, &path).at(&path)?;
        sync_dir(&self.dir)
    }

    pub(crate) fn list(&self) -> Result<Vec<GroupInfo>> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for entry in entries {
            let name = entry.at(&self.dir)?.file_name();
            if let Some(group) = name.to_str().and_then(|n| n.strip_suffix(".json")).filter(|n| !n.starts_with('.')) {
                out.push(GroupInfo { group: group.to_owned(), offsets: self.load(group)? });
            }
        }
        out.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(out)
    }
}

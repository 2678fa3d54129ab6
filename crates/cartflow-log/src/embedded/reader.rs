//! Reading one partition from an offset, following the writer across segments.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::frame::{self, Decoded};
use super::segment::{
    Cursor, Stop, damaged, list_segments, open_read, read_frames, read_tail, segment_base, segment_path,
    whole_frame_within,
};
use crate::Record;
use crate::error::{LogError, Result};

pub(crate) struct PartitionReader {
    dir: PathBuf,
    open: Option<(PathBuf, File)>,
    cur: Cursor,
    /// Frames below this offset are read past but not returned (after a seek).
    skip_to: u64,
    buf: Vec<u8>,
}

impl PartitionReader {
    pub(crate) fn new(dir: &Path) -> Self {
        PartitionReader { dir: dir.to_owned(), open: None, cur: Cursor::default(), skip_to: 0, buf: Vec::new() }
    }

    /// Next offset this reader returns.
    pub(crate) fn position(&self) -> u64 {
        self.cur.offset.max(self.skip_to)
    }

    /// Positions the reader at `offset`; below the log start it starts at the
    /// first offset still held (retention removed the rest).
    pub(crate) fn seek(&mut self, offset: u64) -> Result<()> {
        self.open = None;
        self.cur = Cursor { pos: 0, offset: 0 };
        self.skip_to = offset;
        self.open_segment_for(offset)
    }

    fn open_segment_for(&mut self, offset: u64) -> Result<()> {
        let segs = list_segments(&self.dir)?;
        let Some(&first) = segs.first() else {
            return Ok(());
        };
        let base = segs.iter().rev().copied().find(|b| *b <= offset).unwrap_or(first);
        if offset < first {
            tracing::warn!(dir = %self.dir.display(), offset, first, "offset was removed by retention; reading from the log start");
            self.skip_to = first;
        }
        let path = segment_path(&self.dir, base);
        let file = open_read(&path)?;
        self.cur = Cursor { pos: 0, offset: base };
        // Walk to the wanted offset now, so reads return records at once.
        let target = self.skip_to.saturating_sub(base) as usize;
        if target > 0 {
            read_frames(&file, &path, &mut self.cur, &mut self.buf, target, |_, _| {})?;
        }
        self.open = Some((path, file));
        Ok(())
    }

    /// Appends up to `max` records to `out`; returns how many.
    pub(crate) fn read(
        &mut self,
        topic: &Arc<str>,
        partition: u32,
        max: usize,
        out: &mut Vec<Record>,
    ) -> Result<usize> {
        self.read_with(max, |offset, f| {
            out.push(Record {
                topic: topic.clone(),
                partition,
                offset,
                timestamp_ms: f.timestamp_ms,
                key: f.key.map(<[u8]>::to_vec),
                value: f.value.to_vec(),
                headers: f.headers.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect(),
            })
        })
    }

    /// Reads to the current end without materializing records; returns the end offset.
    pub(crate) fn scan_to_end(&mut self) -> Result<u64> {
        self.read_with(usize::MAX, |_, _| {})?;
        Ok(self.position())
    }

    fn read_with(&mut self, max: usize, mut each: impl FnMut(u64, super::frame::Frame<'_>)) -> Result<usize> {
        if self.open.is_none() {
            self.open_segment_for(self.skip_to)?;
        }
        let mut n = 0;
        while n < max {
            let Some((path, file)) = &self.open else {
                break;
            };
            let skip_to = self.skip_to;
            let mut emitted = 0;
            let stop = read_frames(file, path, &mut self.cur, &mut self.buf, max - n, |offset, f| {
                // Frames below a seek target are passed over, not returned.
                if offset >= skip_to {
                    each(offset, f);
                    emitted += 1;
                }
            })?;
            n += emitted;
            let damage = match stop {
                Stop::Max => continue,
                Stop::End => None,
                Stop::Partial(why) | Stop::Damaged(why) => Some(why),
            };
            // At the end of this segment: follow the writer into the next one.
            let next = segment_path(&self.dir, self.cur.offset);
            if damage.is_none() && !next.exists() && !path.exists() {
                // Retention removed this segment, and the ones after it, while
                // it was read (a reader slower than retention): go on from the
                // log start, as a seek below it does, rather than call it damage.
                self.open = None;
                self.open_segment_for(self.cur.offset)?;
                continue;
            }
            let onward = (damage.is_none() && next != *path && next.exists())
                || check_stop(&self.dir, path, file, self.cur, &mut self.buf, damage)? == AtStop::NextSegment;
            if !onward {
                break;
            }
            let file = open_read(&next)?;
            self.open = Some((next, file));
            self.cur.pos = 0;
        }
        Ok(n)
    }
}

/// What a reader does where a segment's records stop.
#[derive(Debug, PartialEq)]
enum AtStop {
    /// Nothing more yet: the next poll reads on from here.
    Wait,
    /// The segment ends in a torn record, and the next one starts at the
    /// offset after its last whole record: go on there.
    NextSegment,
}

/// Where a segment's records stop and the next segment does not go on from
/// there, records would be skipped or never reached: the reader fails,
/// naming the segment, rather than wait forever or renumber. A stop in the
/// newest segment is a write in progress or a torn tail (the next append
/// cuts it) unless whole records follow it. A writer finishes a segment
/// before it starts the next, so a stop seen before the next segment
/// appeared is read again before it counts. A closed segment's torn tail
/// (no whole record after it) held no record when the next segment starts
/// right after its whole ones: nothing is skipped by going on there.
fn check_stop(
    dir: &Path,
    path: &Path,
    file: &File,
    cur: Cursor,
    buf: &mut Vec<u8>,
    damage: Option<&'static str>,
) -> Result<AtStop> {
    let base = segment_base(path).unwrap_or(0);
    let Some(later) = list_segments(dir)?.into_iter().find(|b| *b > base) else {
        // One read of what is there now: the writer may have finished the
        // frame since, and written more after it, which is not damage.
        let tail = read_tail(file, path, cur.pos)?;
        return match (frame::decode(&tail), damage) {
            (Decoded::Frame(..), _) => Ok(AtStop::Wait), // it was a write in progress
            (_, Some(why)) if whole_frame_within(&tail) => Err(damaged(path, cur, why)),
            _ => Ok(AtStop::Wait),
        };
    };
    let mut again = cur;
    let stop = read_frames(file, path, &mut again, buf, usize::MAX, |_, _| {})?;
    if again.pos > cur.pos {
        return Ok(AtStop::Wait); // it was a write in progress: the next poll reads on
    }
    if later == again.offset {
        return match damage {
            None => Ok(AtStop::Wait), // the next segment appeared since the caller looked
            Some(why) if whole_frame_within(&read_tail(file, path, cur.pos)?) => Err(damaged(path, cur, why)),
            Some(why) => {
                tracing::warn!(segment = %path.display(), at = cur.pos, "a torn record ({why}) ends the segment; the next one goes on from offset {later}");
                Ok(AtStop::NextSegment)
            }
        };
    }
    match stop {
        Stop::Partial(why) | Stop::Damaged(why) => Err(damaged(path, cur, why)),
        Stop::End | Stop::Max => Err(LogError::Corrupt {
            path: path.to_owned(),
            message: format!(
                "the segment ends at offset {} but the next one starts at {later}: records are missing",
                cur.offset
            ),
        }),
    }
}

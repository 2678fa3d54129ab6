//! Segment files: `<partition dir>/<base offset, 20 digits>.log`, and reading
//! frames out of them.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::frame::{self, Decoded, Frame};
use crate::error::{IoContext, LogError, Result};

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// The base offset a segment's file name holds.
pub(crate) fn segment_base(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_suffix(".log")?.parse().ok()
}

/// Base offsets of the partition's segments, oldest first.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(bases),
        Err(e) => return Err(e).at(dir),
    };
    for entry in entries {
        if let Some(base) = segment_base(&entry.at(dir)?.path()) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// A read position inside one segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Byte position of the next frame.
    pub pos: u64,
    /// Offset of the next frame.
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// `max` frames were read.
    Max,
    /// The file ends exactly after the last whole frame.
    End,
    /// Bytes follow that are not (yet) a whole frame: a write in progress, or a torn one.
    Partial(&'static str),
    /// A frame that cannot be read (its length, checksum or fields): a torn
    /// write when nothing whole follows, damage when something does.
    Damaged(&'static str),
}

const CHUNK: usize = 256 << 10;

/// Reads up to `max` frames from `cur`, advancing it past each one handed to `each`.
pub(crate) fn read_frames(
    file: &File,
    path: &Path,
    cur: &mut Cursor,
    buf: &mut Vec<u8>,
    max: usize,
    mut each: impl FnMut(u64, Frame<'_>),
) -> Result<Stop> {
    let mut count = 0;
    if buf.len() < CHUNK {
        buf.resize(CHUNK, 0);
    }
    loop {
        if count == max {
            return Ok(Stop::Max);
        }
        let n = read_at_most(file, path, buf, cur.pos)?;
        if n == 0 {
            return Ok(Stop::End);
        }
        let mut used = 0;
        loop {
            if count == max {
                return Ok(Stop::Max);
            }
            match frame::decode(&buf[used..n]) {
                Decoded::Frame(f, size) => {
                    each(cur.offset, f);
                    used += size;
                    cur.pos += size as u64;
                    cur.offset += 1;
                    count += 1;
                }
                Decoded::Incomplete if used == n && n < buf.len() => return Ok(Stop::End),
                Decoded::Incomplete if n < buf.len() => {
                    return Ok(Stop::Partial("incomplete frame"));
                }
                Decoded::Incomplete => {
                    // The chunk was full: read on from the first unread frame,
                    // growing the buffer when one frame is larger than it.
                    if used == 0 {
                        let want = needed_len(&buf[..n]).unwrap_or(buf.len() * 2);
                        buf.resize(want.max(buf.len() * 2), 0);
                    }
                    break;
                }
                Decoded::Corrupt(why) => return Ok(Stop::Damaged(why)),
            }
        }
    }
}

fn needed_len(buf: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    (len <= frame::MAX_FRAME).then_some(len + frame::LEN_BYTES)
}

fn read_at_most(file: &File, path: &Path, buf: &mut [u8], pos: u64) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).at(path),
        }
    }
    Ok(filled)
}

/// Counts the whole frames of a segment from `cur` to its end.
pub(crate) fn scan_to_end(file: &File, path: &Path, cur: &mut Cursor, buf: &mut Vec<u8>) -> Result<Stop> {
    read_frames(file, path, cur, buf, usize::MAX, |_, _| {})
}

/// Whether a whole, checksummed frame starts anywhere in `bytes` past its
/// first byte. After a frame that does not read, one means the damage is
/// not a torn tail but sits before records that cutting there would lose.
/// Byte by byte, so quadratic at worst: only ever run on damage.
pub(crate) fn whole_frame_within(bytes: &[u8]) -> bool {
    (1..bytes.len()).any(|at| matches!(frame::decode(&bytes[at..]), Decoded::Frame(..)))
}

/// The bytes of `file` from `pos` to its end.
pub(crate) fn read_tail(file: &File, path: &Path, pos: u64) -> Result<Vec<u8>> {
    let len = file.metadata().at(path)?.len();
    let mut tail = vec![0; len.saturating_sub(pos) as usize];
    let n = read_at_most(file, path, &mut tail, pos)?;
    tail.truncate(n);
    Ok(tail)
}

/// The error for a frame at `cur` that does not read (`why`) with whole
/// frames after it: the log stops there rather than skip or cut records.
pub(crate) fn damaged(path: &Path, cur: Cursor, why: &str) -> LogError {
    LogError::Corrupt {
        path: path.to_owned(),
        message: format!(
            "the record at byte {} (offset {}) is damaged ({why}) and records follow it: \
             not skipping or cutting them; restore the segment, or truncate it at byte {} to drop \
             offsets {} and later",
            cur.pos, cur.offset, cur.pos, cur.offset
        ),
    }
}

pub(crate) fn open_read(path: &Path) -> Result<File> {
    File::open(path).at(path)
}

//! Segment files: `<partition dir>/<base offset, 20 digits>.log`, and reading
//! frames out of them.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::frame::{self, Decoded, Frame};
use crate::error::{IoContext, Result};

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
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
        let name = entry.at(dir)?.file_name();
        if let Some(base) = name.to_str().and_then(|n| n.strip_suffix(".log")).and_then(|n| n.parse().ok()) {
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
                Decoded::Corrupt(why) => return Ok(Stop::Partial(why)),
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

pub(crate) fn open_read(path: &Path) -> Result<File> {
    File::open(path).at(path)
}

//! The on-disk record frame. Offsets are not stored: a record's offset is its
//! segment's base offset plus its position in the segment, so frames can be
//! encoded (and checksummed) before the writer knows where they will land.
//!
//! ```text
//! u32 len      bytes after this field
//! u32 crc32    of everything after this field
//! i64 timestamp_ms
//! i32 key_len  -1 = no key
//! [key]
//! u16 header_count, then per header: u16 name_len, name, u32 value_len, value
//! [value]      the rest of the frame
//! ```
//! All integers little-endian.

pub(crate) const LEN_BYTES: usize = 4;
const FIXED: usize = 4 + 8 + 4 + 2; // crc, timestamp, key_len, header_count
/// Frames larger than this are treated as corruption rather than allocated.
pub(crate) const MAX_FRAME: usize = 64 << 20;

pub(crate) fn encode(
    buf: &mut Vec<u8>,
    timestamp_ms: i64,
    key: Option<&[u8]>,
    headers: &[(&str, &[u8])],
    value: &[u8],
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 8]); // len and crc, filled below
    buf.extend_from_slice(&timestamp_ms.to_le_bytes());
    match key {
        Some(k) => {
            buf.extend_from_slice(&(k.len() as i32).to_le_bytes());
            buf.extend_from_slice(k);
        }
        None => buf.extend_from_slice(&(-1i32).to_le_bytes()),
    }
    buf.extend_from_slice(&(headers.len() as u16).to_le_bytes());
    for (name, v) in headers {
        buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        buf.extend_from_slice(v);
    }
    buf.extend_from_slice(value);
    let len = (buf.len() - start - LEN_BYTES) as u32;
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

pub(crate) struct Frame<'a> {
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub value: &'a [u8],
}

pub(crate) enum Decoded<'a> {
    /// A whole, checksummed frame and its size in bytes.
    Frame(Frame<'a>, usize),
    /// The buffer ends inside a frame: more may come, or it is a torn write.
    Incomplete,
    /// The bytes are not a frame: a torn or damaged write.
    Corrupt(&'static str),
}

/// Decodes the frame at the start of `buf`.
pub(crate) fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < LEN_BYTES {
        return Decoded::Incomplete;
    }
    let len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
    if !(FIXED..=MAX_FRAME).contains(&len) {
        return Decoded::Corrupt("impossible frame length");
    }
    if buf.len() < LEN_BYTES + len {
        return Decoded::Incomplete;
    }
    let body = &buf[LEN_BYTES..LEN_BYTES + len];
    let crc = u32::from_le_bytes(body[..4].try_into().unwrap());
    if crc32fast::hash(&body[4..]) != crc {
        return Decoded::Corrupt("checksum mismatch");
    }
    match parse_body(&body[4..]) {
        Some(frame) => Decoded::Frame(frame, LEN_BYTES + len),
        None => Decoded::Corrupt("frame fields overrun the frame"),
    }
}

fn parse_body(b: &[u8]) -> Option<Frame<'_>> {
    let mut p = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = b.get(p..p + n)?;
        p += n;
        Some(s)
    };
    let timestamp_ms = i64::from_le_bytes(take(8)?.try_into().ok()?);
    let key_len = i32::from_le_bytes(take(4)?.try_into().ok()?);
    let key = if key_len < 0 { None } else { Some(take(key_len as usize)?) };
    let n_headers = u16::from_le_bytes(take(2)?.try_into().ok()?);
    let mut headers = Vec::with_capacity(n_headers as usize);
    for _ in 0..n_headers {
        let nl = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(take(nl)?).ok()?;
        let vl = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        headers.push((name, take(vl)?));
    }
    let value = &b[p..];
    Some(Frame { timestamp_ms, key, headers, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut buf = Vec::new();
        encode(&mut buf, 42, Some(b"k"), &[("h", b"v")], b"value");
        encode(&mut buf, 43, None, &[], b"");
        let Decoded::Frame(f, n) = decode(&buf) else { panic!() };
        assert_eq!((f.timestamp_ms, f.key, f.value), (42, Some(&b"k"[..]), &b"value"[..]));
        assert_eq!(f.headers, vec![("h", &b"v"[..])]);
        let Decoded::Frame(g, m) = decode(&buf[n..]) else { panic!() };
        assert_eq!((g.key, g.value, n + m), (None, &b""[..], buf.len()));
        assert!(matches!(decode(&buf[..n - 1]), Decoded::Incomplete));
        buf[10] ^= 0xff;
        assert!(matches!(decode(&buf), Decoded::Corrupt(_)));
    }
}

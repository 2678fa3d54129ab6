//! Where each CDC record came from, carried in its header, so a restart can
//! tell from the topic alone what is already written: the CDC topic has one
//! partition (Debezium's default) and positions only grow along it.
//!
//! The initial snapshot reads rows in primary-key order at some LSN. A pass
//! cut short by a crash is resumed by a new pass at a later LSN for the keys
//! after the last one written; `cuts` remember which keys were read at which
//! LSN, so that streaming skips exactly the changes a pass already saw.

use serde::{Deserialize, Serialize};

/// Header holding a record's [`Position`] as JSON.
pub const HEADER: &str = "cartflow.cdc.pos";

/// Rows with keys up to `upto_pk` (and above the previous cut's) were read at `lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    pub upto_pk: i64,
    pub lsn: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub enum Position {
    /// A snapshot read of the row with key `pk`, by a pass at `lsn`.
    Snapshot { pk: i64, lsn: u64, cuts: Vec<Cut>, last: bool },
    /// The `index`-th record of the transaction that committed at `commit`.
    Stream { commit: u64, index: u32, cuts: Vec<Cut> },
}

/// What to do on start, decided by the last record written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Nothing written: a new slot and a whole snapshot.
    Fresh,
    /// A snapshot pass for the keys after `after_pk`.
    Snapshot { after_pk: i64, cuts: Vec<Cut> },
    /// Streaming from the slot, skipping what is at or before `after`.
    Stream { after: Option<(u64, u32)>, cuts: Vec<Cut> },
}

pub fn resume(last: Option<Position>) -> Resume {
    match last {
        None => Resume::Fresh,
        Some(Position::Snapshot { pk, lsn, mut cuts, last: false }) => {
            cuts.push(Cut { upto_pk: pk, lsn });
            Resume::Snapshot { after_pk: pk, cuts }
        }
        Some(Position::Snapshot { lsn, cuts, last: true, .. }) => {
            Resume::Stream { after: None, cuts: finish(cuts, lsn) }
        }
        Some(Position::Stream { commit, index, cuts }) => Resume::Stream { after: Some((commit, index)), cuts },
    }
}

/// The cuts once a pass at `lsn` has read every remaining key.
pub fn finish(mut cuts: Vec<Cut>, lsn: u64) -> Vec<Cut> {
    cuts.push(Cut { upto_pk: i64::MAX, lsn });
    cuts
}

/// True when the snapshot already holds the effect of a change to `pk`
/// committed at `commit`.
pub fn in_snapshot(cuts: &[Cut], pk: i64, commit: u64) -> bool {
    cuts.iter().find(|c| pk <= c.upto_pk).is_some_and(|c| commit < c.lsn)
}

/// The cuts still needed by changes committed at or after `commit`.
pub fn still_needed(cuts: Vec<Cut>, commit: u64) -> Vec<Cut> {
    if cuts.iter().all(|c| commit >= c.lsn) { Vec::new() } else { cuts }
}

/// `0/1DADCF0` as a number.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_cut_short_resumes_after_its_last_key() {
        let last = Position::Snapshot { pk: 40, lsn: 100, cuts: vec![], last: false };
        let Resume::Snapshot { after_pk, cuts } = resume(Some(last)) else { panic!() };
        assert_eq!(after_pk, 40);
        let cuts = finish(cuts, 250);
        // Key 10 was read at 100, key 90 at 250: a change to each committed at 200.
        assert!(!in_snapshot(&cuts, 10, 200), "committed after the first pass read key 10");
        assert!(in_snapshot(&cuts, 90, 200), "the second pass, at 250, saw it");
        assert!(!in_snapshot(&cuts, 90, 250));
        assert_eq!(still_needed(cuts.clone(), 249), cuts);
        assert!(still_needed(cuts, 250).is_empty());
    }

    #[test]
    fn positions_round_trip_and_streaming_resumes_after_the_last() {
        let p = Position::Stream { commit: 7, index: 3, cuts: vec![Cut { upto_pk: i64::MAX, lsn: 5 }] };
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""phase":"stream""#), "{json}");
        assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), p);
        assert_eq!(
            resume(Some(p)),
            Resume::Stream { after: Some((7, 3)), cuts: vec![Cut { upto_pk: i64::MAX, lsn: 5 }] }
        );
        assert_eq!(resume(None), Resume::Fresh);
        assert_eq!(parse_lsn("0/1DADCF0"), Some(0x1DADCF0));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(format_lsn(0x1_01DA_DCF0), "1/1DADCF0");
    }
}

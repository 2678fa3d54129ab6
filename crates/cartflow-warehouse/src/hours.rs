//! Event hours, and which of them a build must redo: pure, no I/O.
//!
//! Silver rows of hour H depend on the bronze files of H (duplicates are
//! always in the same hour: they share the event time) and, for session
//! order, on those of every hour back to 00:00 UTC of the day before H's day.
//! An hour is rebuilt when the fingerprint of exactly those files changes, so
//! new hours never redo old ones and a late event redoes its hour and the
//! hours whose session order could have moved.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hasher;

use cartflow_core::time::{Micros, civil_hour, parse_timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// Hours since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hour(pub i64);

impl Hour {
    pub fn of(t: Micros) -> Hour {
        Hour(t.div_euclid(MICROS_PER_HOUR))
    }

    pub fn start(self) -> Micros {
        self.0 * MICROS_PER_HOUR
    }

    /// 00:00 of the day before this hour's day: where session order starts counting.
    pub fn lookback_start(self) -> Hour {
        Hour(self.0.div_euclid(24) * 24 - 24)
    }

    pub fn day(self) -> i64 {
        self.0.div_euclid(24)
    }

    /// `year=YYYY/month=MM/day=DD/hour=HH`, as the lake's folders.
    pub fn partition(self) -> String {
        cartflow_lake::layout::hour_partition(self.start())
    }

    /// The hour of a lake path holding `…/year=YYYY/month=MM/day=DD/hour=HH/…`.
    pub fn from_path(path: &str) -> Option<Hour> {
        let value = |key: &str| {
            let start = path.find(key)? + key.len();
            let end = path[start..].find('/').map_or(path.len(), |e| start + e);
            path[start..end].parse::<u32>().ok()
        };
        let (y, m, d, h) = (value("year=")?, value("month=")?, value("day=")?, value("hour=")?);
        parse_timestamp(&format!("{y:04}-{m:02}-{d:02} {h:02}:00:00 UTC")).map(Hour::of)
    }

    /// Parses `2019-10-01T07` (as printed) or any timestamp cartflow reads.
    pub fn parse(s: &str) -> Option<Hour> {
        if let Some((date, hour)) = s.split_once('T')
            && hour.len() == 2
        {
            return parse_timestamp(&format!("{date} {hour}:00:00 UTC")).map(Hour::of);
        }
        parse_timestamp(s).map(Hour::of)
    }
}

impl fmt::Display for Hour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d, h) = civil_hour(self.start());
        write!(f, "{y:04}-{m:02}-{d:02}T{h:02}")
    }
}

impl Serialize for Hour {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hour {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hour::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an hour like 2019-10-01T07")))
    }
}

/// A short stable fingerprint (xxHash64; std's hasher may change between releases).
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = twox_hash::XxHash64::with_seed(0);
    for p in parts {
        h.write(p.as_bytes());
        h.write_u8(0);
    }
    format!("{:016x}", h.finish())
}

/// The bronze files of each hour, as listed.
pub type BronzeHours = BTreeMap<Hour, Vec<String>>;

/// Each hour's input fingerprint: its own files and those of the hours back
/// to its lookback start, with the build format.
pub fn input_fingerprints(bronze: &BronzeHours, format: u32) -> BTreeMap<Hour, String> {
    let format = format.to_string();
    bronze
        .keys()
        .map(|&hour| {
            let window = bronze.range(hour.lookback_start()..=hour);
            let parts = window.flat_map(|(_, files)| files.iter().map(String::as_str));
            (hour, fingerprint(std::iter::once(format.as_str()).chain(parts)))
        })
        .collect()
}

/// The hours of one day to rebuild, and the bronze hours their rows need.
#[derive(Debug, Clone, PartialEq)]
pub struct DayChunk {
    pub write: Vec<Hour>,
    pub read: Vec<Hour>,
}

/// Which hours to rebuild: those in `[since, until)` whose inputs changed
/// since `built` (hour → inputs fingerprint), one chunk per day.
pub fn plan(
    bronze: &BronzeHours,
    inputs: &BTreeMap<Hour, String>,
    built: &BTreeMap<Hour, String>,
    since: Option<Hour>,
    until: Option<Hour>,
) -> Vec<DayChunk> {
    let mut days: BTreeMap<i64, Vec<Hour>> = BTreeMap::new();
    for (&hour, fp) in inputs {
        let in_range = since.is_none_or(|s| hour >= s) && until.is_none_or(|u| hour < u);
        if in_range && built.get(&hour) != Some(fp) {
            days.entry(hour.day()).or_default().push(hour);
        }
    }
    days.into_values()
        .map(|write| {
            let (first, last) = (write[0], write[write.len() - 1]);
            let read = bronze.range(first.lookback_start()..=last).map(|(h, _)| *h).collect();
            DayChunk { write, read }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hour {
        Hour::parse(s).unwrap()
    }

    fn bronze(hours: &[(&str, &[&str])]) -> BronzeHours {
        hours.iter().map(|(hr, files)| (h(hr), files.iter().map(|f| f.to_string()).collect())).collect()
    }

    #[test]
    fn hours_print_parse_and_come_from_paths() {
        let hour = h("2019-10-01T07");
        assert_eq!(hour.to_string(), "2019-10-01T07");
        assert_eq!(Hour::parse("2019-10-01 07:59:59 UTC"), Some(hour));
        assert_eq!(Hour::from_path("events/year=2019/month=10/day=01/hour=07/part-000000000001.parquet"), Some(hour));
        assert_eq!(Hour::from_path("events/year=2019/month=10/part.parquet"), None);
        assert_eq!(hour.partition(), "year=2019/month=10/day=01/hour=07");
        assert_eq!(hour.lookback_start(), h("2019-09-30T00"));
        assert_eq!(serde_json::to_string(&hour).unwrap(), "\"2019-10-01T07\"");
    }

    #[test]
    fn a_first_build_does_every_hour_day_by_day() {
        let b = bronze(&[("2019-10-01T00", &["a"]), ("2019-10-01T05", &["b"]), ("2019-10-02T03", &["c"])]);
        let chunks = plan(&b, &input_fingerprints(&b, 1), &BTreeMap::new(), None, None);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].write, vec![h("2019-10-01T00"), h("2019-10-01T05")]);
        assert_eq!(chunks[1].write, vec![h("2019-10-02T03")]);
        // The second day reads the first for session order.
        assert_eq!(chunks[1].read, vec![h("2019-10-01T00"), h("2019-10-01T05"), h("2019-10-02T03")]);
    }

    #[test]
    fn new_hours_do_not_redo_old_ones() {
        let old = bronze(&[("2019-10-01T00", &["a"]), ("2019-10-01T01", &["b"])]);
        let built = input_fingerprints(&old, 1);
        let mut new = old.clone();
        new.insert(h("2019-10-01T02"), vec!["c".into()]);
        let chunks = plan(&new, &input_fingerprints(&new, 1), &built, None, None);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].write, vec![h("2019-10-01T02")]);
        assert_eq!(chunks[0].read.len(), 3);
    }

    #[test]
    fn a_late_file_redoes_its_hour_and_the_session_window_after_it() {
        let hours: Vec<String> = (0..72).map(|i| Hour(435_000 + i).to_string()).collect();
        let old: BronzeHours = hours.iter().map(|s| (h(s), vec![format!("{s}/a")])).collect();
        let built = input_fingerprints(&old, 1);
        let mut new = old.clone();
        let late = Hour(435_000 + 10);
        new.get_mut(&late).unwrap().push("late".into());
        let written: Vec<Hour> =
            plan(&new, &input_fingerprints(&new, 1), &built, None, None).into_iter().flat_map(|c| c.write).collect();
        // From the late hour to the end of the following day, nothing else.
        let end_of_next_day = Hour((late.day() + 2) * 24);
        assert_eq!(written, (late.0..end_of_next_day.0).map(Hour).collect::<Vec<_>>());
        // A format change redoes everything; a range limits what is done.
        assert_eq!(plan(&new, &input_fingerprints(&new, 2), &built, None, None).len(), 3);
        let limited =
            plan(&new, &input_fingerprints(&new, 2), &built, Some(Hour(435_000 + 24)), Some(Hour(435_000 + 30)));
        assert_eq!(limited.iter().map(|c| c.write.len()).sum::<usize>(), 6);
    }
}

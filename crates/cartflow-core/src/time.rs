//! Event timestamps: microseconds since the Unix epoch, UTC.
//!
//! The dataset writes `2019-10-01 00:00:00 UTC`; JSON producers and Debezium
//! write ISO-8601 (`2019-10-01T00:00:00Z`, `…+02:00`, fractional seconds) or
//! epoch numbers. The fixed dataset form is parsed by hand because it is on the
//! hot path of every event (chrono's format-string parser is ~10× slower);
//! everything else goes through chrono.

use chrono::{DateTime, Datelike, NaiveDate, Timelike};

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

const MICROS_PER_SEC: i64 = 1_000_000;

/// Parses the dataset form `YYYY-MM-DD HH:MM:SS UTC` and ISO-8601 / RFC 3339.
/// A timestamp without zone (`2019-10-01 00:00:00` or `2019-10-01T00:00:00`) is
/// read as UTC, as the dataset's timestamps all are.
pub fn parse_timestamp(s: &str) -> Option<Micros> {
    parse_any(s.trim()).filter(|t| (FIRST..=LAST).contains(t))
}

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z: RFC 3339's years,
/// and the ones that print back as they were read (chrono also reads
/// `-19-10-01` and `+12019-10-01`).
const FIRST: Micros = -62_167_219_200_000_000;
const LAST: Micros = 253_402_300_799_999_999;

fn parse_any(s: &str) -> Option<Micros> {
    if let Some(t) = parse_fixed(s.as_bytes()) {
        return Some(t);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros());
    }
    let s = s.strip_suffix(" UTC").unwrap_or(s);
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    None
}

/// `YYYY-MM-DD HH:MM:SS UTC`, `YYYY-MM-DDTHH:MM:SSZ` and the same without a zone.
fn parse_fixed(b: &[u8]) -> Option<Micros> {
    let rest = match b.len() {
        19 => &b[19..],
        20 if b[19] == b'Z' => &b[20..],
        23 if &b[19..] == b" UTC" => &b[23..],
        _ => return None,
    };
    debug_assert!(rest.is_empty());
    if b[4] != b'-' || b[7] != b'-' || !(b[10] == b' ' || b[10] == b'T') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<u32> {
        let mut n = 0u32;
        for &c in &b[from..from + len] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + (c - b'0') as u32;
        }
        Some(n)
    };
    let date = NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 2)?, num(8, 2)?)?;
    let (h, m, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let days = date.num_days_from_ce() as i64 - 719_163; // days from 0001-01-01 to 1970-01-01
    Some((days * 86_400 + (h * 3600 + m * 60 + s) as i64) * MICROS_PER_SEC)
}

/// Reads an epoch number by its magnitude, as Debezium and JSON producers send
/// seconds, milliseconds or microseconds: below 10^11 is seconds (until year
/// 5138), below 10^14 milliseconds, else microseconds.
pub fn from_epoch_number(n: f64) -> Option<Micros> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let micros = if n < 1e11 {
        n * 1e6
    } else if n < 1e14 {
        n * 1e3
    } else {
        n
    };
    (micros < 1e17).then_some(micros as i64)
}

/// [`format_rfc3339`] into a new string.
pub fn rfc3339(t: Micros) -> String {
    let mut s = String::with_capacity(27);
    format_rfc3339(t, &mut s);
    s
}

/// RFC 3339 in UTC with a `Z`, fractional digits only when there are any:
/// `2019-10-01T00:00:00Z`, `2019-10-01T00:00:00.250Z`.
pub fn format_rfc3339(t: Micros, out: &mut String) {
    let secs = t.div_euclid(MICROS_PER_SEC);
    let frac = t.rem_euclid(MICROS_PER_SEC);
    let dt = DateTime::from_timestamp(secs, 0).unwrap_or_default();
    push_date_time(&dt, 'T', out);
    push_fraction(frac, out);
    out.push('Z');
}

/// The dataset's own form, `2019-10-01 00:00:00 UTC`, with a fraction of a
/// second only when there is one (`2019-10-01 00:00:00.250 UTC`): the
/// dataset's times are whole seconds, but CDC's and JSON producers' may not
/// be, and what the validator writes must read back as the same instant.
pub fn format_dataset(t: Micros, out: &mut String) {
    let dt = DateTime::from_timestamp(t.div_euclid(MICROS_PER_SEC), 0).unwrap_or_default();
    push_date_time(&dt, ' ', out);
    push_fraction(t.rem_euclid(MICROS_PER_SEC), out);
    out.push_str(" UTC");
}

/// `.250` for whole milliseconds, `.000007` otherwise; nothing for none.
fn push_fraction(micros: i64, out: &mut String) {
    if micros == 0 {
        return;
    }
    out.push('.');
    let ms = micros / 1000;
    if ms * 1000 == micros { push_padded(out, ms as u32, 3) } else { push_padded(out, micros as u32, 6) }
}

fn push_date_time(dt: &DateTime<chrono::Utc>, sep: char, out: &mut String) {
    push_padded(out, dt.year() as u32, 4);
    out.push('-');
    push_padded(out, dt.month(), 2);
    out.push('-');
    push_padded(out, dt.day(), 2);
    out.push(sep);
    push_padded(out, dt.hour(), 2);
    out.push(':');
    push_padded(out, dt.minute(), 2);
    out.push(':');
    push_padded(out, dt.second(), 2);
}

fn push_padded(out: &mut String, n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = buf.len() - i;
    for _ in digits..width {
        out.push('0');
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ascii digits"));
}

/// (year, month, day, hour) of a timestamp in UTC.
pub fn civil_hour(t: Micros) -> (i32, u32, u32, u32) {
    let dt = DateTime::from_timestamp(t.div_euclid(MICROS_PER_SEC), 0).unwrap_or_default();
    (dt.year(), dt.month(), dt.day(), dt.hour())
}

/// The wall clock, in the events' unit.
pub fn now_micros() -> Micros {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since.as_micros() as Micros
}

/// Weekday of a timestamp in UTC, Monday = 0.
pub fn weekday(t: Micros) -> u32 {
    // 1970-01-01 was a Thursday (3 when Monday = 0).
    ((t.div_euclid(86_400 * MICROS_PER_SEC) + 3).rem_euclid(7)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc(t: Micros) -> String {
        let mut s = String::new();
        format_rfc3339(t, &mut s);
        s
    }

    #[test]
    fn dataset_and_iso_forms_agree() {
        let want = 1_569_888_000 * MICROS_PER_SEC; // 2019-10-01T00:00:00Z
        for s in [
            "2019-10-01 00:00:00 UTC",
            "2019-10-01T00:00:00Z",
            "2019-10-01 00:00:00",
            "2019-10-01T02:00:00+02:00",
            "2019-10-01T00:00:00.000Z",
            "2019-10-01 00:00:00.000 UTC",
        ] {
            assert_eq!(parse_timestamp(s), Some(want), "{s}");
        }
        assert_eq!(rfc(want), "2019-10-01T00:00:00Z");
        assert_eq!(rfc(want + 250_000), "2019-10-01T00:00:00.250Z");
        assert_eq!(rfc(want + 7), "2019-10-01T00:00:00.000007Z");
        let dataset = |t| {
            let mut s = String::new();
            format_dataset(t, &mut s);
            s
        };
        assert_eq!(dataset(want), "2019-10-01 00:00:00 UTC");
        // Found by the record fuzz target: a CDC or JSON event's fraction of a
        // second was dropped from the validated JSON, which then read back as
        // another instant.
        for (t, s) in [(want + 270_000, "2019-10-01 00:00:00.270 UTC"), (want + 7, "2019-10-01 00:00:00.000007 UTC")] {
            assert_eq!(dataset(t), s);
            assert_eq!(parse_timestamp(s), Some(t), "{s}");
        }
    }

    /// Found by the timestamp fuzz target: chrono reads years before 0000 and
    /// after 9999, which then printed as garbage (`-19` as `4294967277`).
    #[test]
    fn years_outside_0000_to_9999_are_not_timestamps() {
        for s in ["-19-10-01T00:00:00.12", "+12019-10-01 00:00:00", "0000-01-01T00:00:00+00:01"] {
            assert_eq!(parse_timestamp(s), None, "{s}");
        }
        for s in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"] {
            let t = parse_timestamp(s).unwrap();
            assert_eq!(rfc(t), s, "{s}");
        }
    }

    #[test]
    fn rejects_broken_timestamps() {
        for s in [
            "",
            "yesterday",
            "2019-13-01 00:00:00 UTC",
            "2019-02-30 00:00:00 UTC",
            "2019-10-01 24:00:00 UTC",
            "2019-10-01",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s}");
        }
    }

    #[test]
    fn epoch_numbers_by_magnitude() {
        let want = 1_569_888_000 * MICROS_PER_SEC;
        assert_eq!(from_epoch_number(1_569_888_000.0), Some(want));
        assert_eq!(from_epoch_number(1_569_888_000_000.0), Some(want));
        assert_eq!(from_epoch_number(1_569_888_000_000_000.0), Some(want));
        assert_eq!(from_epoch_number(-1.0), None);
    }

    #[test]
    fn weekday_monday_is_zero() {
        assert_eq!(weekday(parse_timestamp("2019-10-01 00:00:00 UTC").unwrap()), 1); // a Tuesday
        assert_eq!(weekday(parse_timestamp("2019-10-06 23:59:59 UTC").unwrap()), 6); // a Sunday
    }
}

//! The validation rules: a `RawEvent` becomes an `Event`, or an `Invalid` that
//! says which field broke which rule. Rules run in the dataset's field order
//! and the first broken one is reported.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;

use crate::event::{Event, EventType};
use crate::raw::{RawEvent, Scalar};
use crate::time::{self, Micros};

/// Why a record was rejected; the machine-readable `reason` of the invalid topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidReason {
    /// Not JSON, not UTF-8, or not a CSV line.
    Malformed,
    /// JSON, but not an object, or an envelope without its event.
    BadEnvelope,
    /// A CSV line with too few or too many fields.
    FieldCount,
    MissingField,
    WrongType,
    UnknownEventType,
    NonPositivePrice,
    NonPositiveId,
    BadTimestamp,
    TimestampOutOfRange,
    TooLong,
}

impl InvalidReason {
    pub const ALL: [InvalidReason; 11] = [
        Self::Malformed,
        Self::BadEnvelope,
        Self::FieldCount,
        Self::MissingField,
        Self::WrongType,
        Self::UnknownEventType,
        Self::NonPositivePrice,
        Self::NonPositiveId,
        Self::BadTimestamp,
        Self::TimestampOutOfRange,
        Self::TooLong,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadEnvelope => "bad_envelope",
            Self::FieldCount => "field_count",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::UnknownEventType => "unknown_event_type",
            Self::NonPositivePrice => "non_positive_price",
            Self::NonPositiveId => "non_positive_id",
            Self::BadTimestamp => "bad_timestamp",
            Self::TimestampOutOfRange => "timestamp_out_of_range",
            Self::TooLong => "too_long",
        }
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected record: the rule, the field (empty when the whole record is at
/// fault) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{reason} ({field}): {message}")]
pub struct Invalid {
    pub reason: InvalidReason,
    pub field: Cow<'static, str>,
    pub message: String,
}

impl Invalid {
    pub fn new(reason: InvalidReason, field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Invalid { reason, field: field.into(), message: message.into() }
    }
}

/// Limits that are configuration, not code.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Earliest acceptable event time.
    pub min_event_time: Micros,
    /// Latest acceptable event time (the validator sets it to now + allowed skew).
    pub max_event_time: Micros,
    /// Longest accepted string field, in bytes.
    pub max_string_len: usize,
}

impl Default for Rules {
    /// 2000-01-01 to 2100-01-01; the validator narrows the upper bound to "now + skew".
    fn default() -> Self {
        Rules { min_event_time: 946_684_800_000_000, max_event_time: 4_102_444_800_000_000, max_string_len: 256 }
    }
}

pub fn validate(raw: &RawEvent<'_>, rules: &Rules) -> Result<Event, Invalid> {
    let event_time = timestamp(raw.event_time.as_ref(), rules)?;
    let event_type = match required("event_type", raw.event_type.as_ref())? {
        Scalar::Str(s) => s.parse::<EventType>().map_err(|_| {
            Invalid::new(
                InvalidReason::UnknownEventType,
                "event_type",
                format!("unknown event_type {s:?}; expected view, cart, remove_from_cart or purchase"),
            )
        })?,
        other => return Err(wrong_type("event_type", "string", other)),
    };
    let product_id = id("product_id", raw.product_id.as_ref())?;
    let category_id = id("category_id", raw.category_id.as_ref())?;
    let category_code = optional_string("category_code", raw.category_code.as_ref(), rules)?;
    let brand = optional_string("brand", raw.brand.as_ref(), rules)?;
    let price = price(raw.price.as_ref())?;
    let user_id = id("user_id", raw.user_id.as_ref())?;
    let user_session = optional_string("user_session", raw.user_session.as_ref(), rules)?;
    Ok(Event { event_time, event_type, product_id, category_id, category_code, brand, price, user_id, user_session })
}

fn required<'s, 'a>(field: &'static str, v: Option<&'s Scalar<'a>>) -> Result<&'s Scalar<'a>, Invalid> {
    match v {
        Some(Scalar::Str(s)) if s.is_empty() => Err(missing(field)),
        Some(v) => Ok(v),
        None => Err(missing(field)),
    }
}

fn missing(field: &'static str) -> Invalid {
    Invalid::new(InvalidReason::MissingField, field, format!("{field} is required"))
}

fn wrong_type(field: &'static str, expected: &str, got: &Scalar<'_>) -> Invalid {
    Invalid::new(InvalidReason::WrongType, field, format!("{field} must be {expected}, got {}", got.type_name()))
}

fn timestamp(v: Option<&Scalar<'_>>, rules: &Rules) -> Result<Micros, Invalid> {
    const F: &str = "event_time";
    let t = match required(F, v)? {
        Scalar::Str(s) => time::parse_timestamp(s).ok_or_else(|| {
            Invalid::new(
                InvalidReason::BadTimestamp,
                F,
                format!("cannot read {s:?} as a time; expected `2019-10-01 00:00:00 UTC` or ISO-8601"),
            )
        })?,
        Scalar::Int(n) => epoch(*n as f64)?,
        Scalar::Float(n) => epoch(*n)?,
        other => return Err(wrong_type(F, "a string or an epoch number", other)),
    };
    if t < rules.min_event_time || t > rules.max_event_time {
        let s = time::rfc3339(t);
        return Err(Invalid::new(
            InvalidReason::TimestampOutOfRange,
            F,
            format!("event_time {s} is outside the accepted range"),
        ));
    }
    Ok(t)
}

fn epoch(n: f64) -> Result<Micros, Invalid> {
    time::from_epoch_number(n)
        .ok_or_else(|| Invalid::new(InvalidReason::BadTimestamp, "event_time", format!("{n} is not an epoch time")))
}

fn id(field: &'static str, v: Option<&Scalar<'_>>) -> Result<i64, Invalid> {
    let n = match required(field, v)? {
        Scalar::Int(n) => *n,
        Scalar::Str(s) => s.trim().parse::<i64>().map_err(|_| {
            Invalid::new(InvalidReason::WrongType, field, format!("{field} must be an integer, got {s:?}"))
        })?,
        other => return Err(wrong_type(field, "an integer", other)),
    };
    if n <= 0 {
        return Err(Invalid::new(InvalidReason::NonPositiveId, field, format!("{field} must be > 0, got {n}")));
    }
    Ok(n)
}

fn price(v: Option<&Scalar<'_>>) -> Result<f64, Invalid> {
    const F: &str = "price";
    let p = match required(F, v)? {
        Scalar::Int(n) => *n as f64,
        Scalar::Float(n) => *n,
        Scalar::Str(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| Invalid::new(InvalidReason::WrongType, F, format!("price must be a number, got {s:?}")))?,
        other => return Err(wrong_type(F, "a number", other)),
    };
    if !p.is_finite() {
        return Err(Invalid::new(InvalidReason::WrongType, F, format!("price must be a finite number, got {p}")));
    }
    if p <= 0.0 {
        return Err(Invalid::new(InvalidReason::NonPositivePrice, F, format!("price must be > 0, got {p}")));
    }
    Ok(p)
}

fn optional_string(field: &'static str, v: Option<&Scalar<'_>>, rules: &Rules) -> Result<Option<String>, Invalid> {
    match v {
        None => Ok(None),
        Some(Scalar::Str(s)) if s.is_empty() => Ok(None),
        Some(Scalar::Str(s)) if s.len() > rules.max_string_len => Err(Invalid::new(
            InvalidReason::TooLong,
            field,
            format!("{field} is {} bytes, longer than {}", s.len(), rules.max_string_len),
        )),
        Some(Scalar::Str(s)) => Ok(Some(s.clone().into_owned())),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::parse_message;

    const GOOD: &str = r#"{"event_time":"2019-10-01 00:00:00 UTC","event_type":"cart","product_id":44600062,"category_id":2103807459595387724,"category_code":"electronics.smartphone","brand":"shiseido","price":35.79,"user_id":541312140,"user_session":"72d76fde-8bb3-4e00-8c23-a032dfed738c"}"#;

    fn check(json: &str) -> Result<Event, Invalid> {
        let msg = parse_message(json.as_bytes())?;
        validate(&msg.event, &Rules::default())
    }

    /// GOOD with one field replaced by a raw JSON value (or removed with `None`).
    fn with(field: &str, value: Option<&str>) -> String {
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(GOOD).unwrap();
        match value {
            Some(raw) => v.insert(field.into(), serde_json::from_str(raw).unwrap()),
            None => v.remove(field),
        };
        serde_json::to_string(&v).unwrap()
    }

    fn rejects(json: &str, reason: InvalidReason, field: &str) {
        let err = check(json).expect_err(json);
        assert_eq!((err.reason, err.field.as_ref()), (reason, field), "{json}: {err}");
    }

    #[test]
    fn accepts_a_good_event() {
        let e = check(GOOD).unwrap();
        assert_eq!(e.event_type, EventType::Cart);
        assert_eq!(e.category_id, 2103807459595387724);
        assert_eq!(e.brand.as_deref(), Some("shiseido"));
    }

    #[test]
    fn accepts_strings_for_numbers_and_empty_optionals() {
        let e = check(&with("price", Some(r#""35.79""#))).unwrap();
        assert_eq!(e.price, 35.79);
        let e = check(&with("brand", Some(r#""""#))).unwrap();
        assert_eq!(e.brand, None);
        let e = check(&with("user_session", Some("null"))).unwrap();
        assert_eq!(e.user_session, None);
        let e = check(&with("event_time", Some("1569888000000"))).unwrap();
        assert_eq!(e.event_time, 1_569_888_000_000_000);
    }

    #[test]
    fn every_rule_has_a_breaking_case() {
        use InvalidReason::*;
        rejects("not json", Malformed, "");
        rejects("[1,2]", BadEnvelope, "");
        rejects(r#"{"schema":{},"payload":null}"#, BadEnvelope, "payload");
        for f in ["event_time", "event_type", "product_id", "category_id", "price", "user_id"] {
            rejects(&with(f, None), MissingField, f);
            rejects(&with(f, Some("null")), MissingField, f);
        }
        rejects(&with("event_type", Some("3")), WrongType, "event_type");
        rejects(&with("product_id", Some(r#""abc""#)), WrongType, "product_id");
        rejects(&with("user_id", Some("1.5")), WrongType, "user_id");
        rejects(&with("price", Some(r#""cheap""#)), WrongType, "price");
        rejects(&with("price", Some("true")), WrongType, "price");
        rejects(&with("brand", Some("7")), WrongType, "brand");
        rejects(&with("category_code", Some("[1]")), WrongType, "category_code");
        rejects(&with("event_type", Some(r#""click""#)), UnknownEventType, "event_type");
        rejects(&with("price", Some("0")), NonPositivePrice, "price");
        rejects(&with("price", Some("-3.5")), NonPositivePrice, "price");
        rejects(&with("product_id", Some("0")), NonPositiveId, "product_id");
        rejects(&with("user_id", Some("-1")), NonPositiveId, "user_id");
        rejects(&with("category_id", Some("-5")), NonPositiveId, "category_id");
        rejects(&with("event_time", Some(r#""yesterday""#)), BadTimestamp, "event_time");
        rejects(&with("event_time", Some(r#""1999-12-31 23:59:59 UTC""#)), TimestampOutOfRange, "event_time");
        rejects(&with("event_time", Some(r#""2200-01-01T00:00:00Z""#)), TimestampOutOfRange, "event_time");
        rejects(&with("brand", Some(&format!("\"{}\"", "x".repeat(300)))), TooLong, "brand");
        let short = RawEvent::from_csv_line(b"2019-10-01 02:50:00 UTC,view,10900305,2053013555069845885,appliances.kitchen.mixer,elenberg,25.71,52040330");
        let err = short.unwrap_err();
        assert_eq!((err.reason, err.field.as_ref()), (FieldCount, "user_session"));
    }
}

//! The clickstream event as every stage after the validator sees it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::{self, Micros};

/// The dataset's CSV header, in its order.
pub const CSV_HEADER: &str =
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session";

/// The field names in CSV order.
pub const FIELDS: [&str; 9] = [
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    View,
    Cart,
    RemoveFromCart,
    Purchase,
}

impl EventType {
    pub const ALL: [EventType; 4] = [Self::View, Self::Cart, Self::RemoveFromCart, Self::Purchase];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Cart => "cart",
            Self::RemoveFromCart => "remove_from_cart",
            Self::Purchase => "purchase",
        }
    }
}

impl FromStr for EventType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "view" => Self::View,
            "cart" => Self::Cart,
            "remove_from_cart" => Self::RemoveFromCart,
            "purchase" => Self::Purchase,
            _ => return Err(()),
        })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated event. Its JSON form (the `validated` topic) uses the dataset's
/// field names, RFC 3339 UTC times and `null` for missing strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time")]
    pub event_time: Micros,
    pub event_type: EventType,
    pub product_id: i64,
    pub category_id: i64,
    pub category_code: Option<String>,
    pub brand: Option<String>,
    pub price: f64,
    pub user_id: i64,
    pub user_session: Option<String>,
}

impl Event {
    /// Its key in the `validated` topic: the session, or the user when it has
    /// none. A session's events stay in order in one partition, and exact
    /// duplicates always meet in one, so the per-partition state of the
    /// feature streamers counts them once.
    pub fn partition_key(&self) -> std::borrow::Cow<'_, str> {
        match &self.user_session {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(format!("user:{}", self.user_id)),
        }
    }

    /// The partition of a `validated` topic of `partitions` partitions this
    /// event is in: its [`Event::partition_key`] as Kafka's partitioner places it.
    pub fn partition_in(&self, partitions: u32) -> u32 {
        crate::partitioner::partition_for_key(self.partition_key().as_bytes(), partitions)
    }

    /// The normalized JSON of the `validated` topic.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        serde_json::to_writer(&mut out, self).expect("an Event always serializes");
        out
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// One line of the dataset's CSV (no newline), prices with two decimals.
    pub fn write_csv(&self, out: &mut String) {
        use fmt::Write;
        time::format_dataset(self.event_time, out);
        out.push(',');
        out.push_str(self.event_type.as_str());
        let _ = write!(out, ",{},{},", self.product_id, self.category_id);
        out.push_str(self.category_code.as_deref().unwrap_or(""));
        out.push(',');
        out.push_str(self.brand.as_deref().unwrap_or(""));
        let cents = (self.price * 100.0).round() as i64;
        let _ = write!(out, ",{}.{:02},{},", cents / 100, cents % 100, self.user_id);
        out.push_str(self.user_session.as_deref().unwrap_or(""));
    }
}

fn ser_time<S: Serializer>(t: &Micros, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = String::with_capacity(27);
    time::format_rfc3339(*t, &mut buf);
    s.serialize_str(&buf)
}

fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<Micros, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    time::parse_timestamp(&s).ok_or_else(|| serde::de::Error::custom(format!("bad event_time {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Event {
        Event {
            event_time: time::parse_timestamp("2019-10-01 00:00:05 UTC").unwrap(),
            event_type: EventType::Cart,
            product_id: 44600062,
            category_id: 2103807459595387724,
            category_code: Some("electronics.smartphone".into()),
            brand: None,
            price: 35.79,
            user_id: 541312140,
            user_session: Some("72d76fde-8bb3-4e00-8c23-a032dfed738c".into()),
        }
    }

    #[test]
    fn json_round_trip_keeps_19_digit_category_ids() {
        let e = sample();
        let json = String::from_utf8(e.to_json()).unwrap();
        assert!(json.contains("\"category_id\":2103807459595387724"), "{json}");
        assert!(json.contains("\"event_time\":\"2019-10-01T00:00:05Z\""), "{json}");
        assert!(json.contains("\"brand\":null"), "{json}");
        assert_eq!(Event::from_json(json.as_bytes()).unwrap(), e);
    }

    #[test]
    fn csv_line_matches_dataset_format() {
        let mut line = String::new();
        sample().write_csv(&mut line);
        assert_eq!(
            line,
            "2019-10-01 00:00:05 UTC,cart,44600062,2103807459595387724,electronics.smartphone,,35.79,541312140,72d76fde-8bb3-4e00-8c23-a032dfed738c"
        );
    }
}

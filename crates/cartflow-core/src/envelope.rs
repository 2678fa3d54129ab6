//! The three JSON shapes an event arrives in, read in one pass:
//!
//! - a plain event: `{"event_time": …, "event_type": …, …}`;
//! - a Kafka-Connect envelope (JsonConverter with schemas): `{"schema": …, "payload": …}`,
//!   whose payload is a plain event or a Debezium envelope;
//! - a Debezium change event: `{"before", "after", "op", "source", "ts_ms"}`; the
//!   event is `after` for c (insert), r (snapshot read) and u (update), and
//!   `before` for d (delete).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::raw::{RawEvent, Scalar};
use crate::validate::{Invalid, InvalidReason};

/// A Debezium operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Create,
    /// A row read by the initial snapshot.
    Read,
    Update,
    Delete,
}

impl ChangeOp {
    pub fn code(self) -> &'static str {
        match self {
            Self::Create => "c",
            Self::Read => "r",
            Self::Update => "u",
            Self::Delete => "d",
        }
    }

    fn from_code(s: &str) -> Option<Self> {
        Some(match s {
            "c" => Self::Create,
            "r" => Self::Read,
            "u" => Self::Update,
            "d" => Self::Delete,
            _ => return None,
        })
    }
}

/// A message read out of its envelope.
#[derive(Debug)]
pub struct Message<'a> {
    pub event: RawEvent<'a>,
    /// Set for Debezium change events.
    pub op: Option<ChangeOp>,
}

/// Reads a message's bytes. Fails with `malformed` when they are not JSON and
/// `bad_envelope` when the JSON is not an object or an envelope lacks its event.
pub fn parse_message(bytes: &[u8]) -> Result<Message<'_>, Invalid> {
    let wire = parse_wire(bytes)?;
    if wire.has_payload {
        let payload = wire.payload.ok_or_else(|| {
            Invalid::new(InvalidReason::BadEnvelope, "payload", "Kafka-Connect envelope with a null payload")
        })?;
        let inner = parse_wire(payload.get().as_bytes())?;
        if inner.has_payload {
            return Err(Invalid::new(InvalidReason::BadEnvelope, "payload", "nested Kafka-Connect envelopes"));
        }
        return inner.into_message();
    }
    wire.into_message()
}

fn parse_wire(bytes: &[u8]) -> Result<Wire<'_>, Invalid> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let wire = match de.deserialize_any(WireVisitor) {
        Ok(w) => w,
        Err(e) if e.is_data() => {
            return Err(Invalid::new(InvalidReason::BadEnvelope, "", "expected a JSON object"));
        }
        Err(e) => {
            return Err(Invalid::new(InvalidReason::Malformed, "", format!("not JSON: {e}")));
        }
    };
    de.end().map_err(|e| Invalid::new(InvalidReason::Malformed, "", format!("not JSON: {e}")))?;
    Ok(wire)
}

#[derive(Default)]
struct Wire<'a> {
    event: RawEvent<'a>,
    has_payload: bool,
    payload: Option<&'a RawValue>,
    before: Option<&'a RawValue>,
    after: Option<&'a RawValue>,
    op: Option<Cow<'a, str>>,
}

impl<'a> Wire<'a> {
    fn into_message(self) -> Result<Message<'a>, Invalid> {
        let Some(code) = self.op else {
            return Ok(Message { event: self.event, op: None });
        };
        let op = ChangeOp::from_code(&code).ok_or_else(|| {
            Invalid::new(
                InvalidReason::BadEnvelope,
                "op",
                format!("unknown Debezium op {code:?}; expected c, r, u or d"),
            )
        })?;
        let (field, image) = match op {
            ChangeOp::Delete => ("before", self.before),
            _ => ("after", self.after),
        };
        let image = image.ok_or_else(|| {
            Invalid::new(InvalidReason::BadEnvelope, field, format!("Debezium op {code} without {field}"))
        })?;
        let event: RawEvent<'a> = serde_json::from_str(image.get()).map_err(|e| {
            Invalid::new(InvalidReason::BadEnvelope, field, format!("{field} is not an event object: {e}"))
        })?;
        Ok(Message { event, op: Some(op) })
    }
}

struct WireVisitor;

impl<'de> Visitor<'de> for WireVisitor {
    type Value = Wire<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de>, A::Error> {
        let mut w = Wire::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let e = &mut w.event;
            match key.as_ref() {
                "event_time" => e.event_time = map.next_value::<Option<Scalar<'de>>>()?,
                "event_type" => e.event_type = map.next_value()?,
                "product_id" => e.product_id = map.next_value()?,
                "category_id" => e.category_id = map.next_value()?,
                "category_code" => e.category_code = map.next_value()?,
                "brand" => e.brand = map.next_value()?,
                "price" => e.price = map.next_value()?,
                "user_id" => e.user_id = map.next_value()?,
                "user_session" => e.user_session = map.next_value()?,
                "payload" => {
                    w.has_payload = true;
                    w.payload = map.next_value()?;
                }
                "before" => w.before = map.next_value()?,
                "after" => w.after = map.next_value()?,
                "op" => w.op = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{Rules, validate};

    const EVENT: &str = r#"{"event_time":"2019-10-01T00:00:00Z","event_type":"view","product_id":3900821,"category_id":2053013552326770905,"category_code":"appliances.environment.water_heater","brand":"aqua","price":33.2,"user_id":554748717,"user_session":"9333dfbd-b87a-4708-9857-6336556b0fcc"}"#;

    fn event_of(json: &str) -> (crate::Event, Option<ChangeOp>) {
        let m = parse_message(json.as_bytes()).unwrap();
        (validate(&m.event, &Rules::default()).unwrap(), m.op)
    }

    #[test]
    fn plain_connect_and_debezium_give_the_same_event() {
        let (plain, op) = event_of(EVENT);
        assert_eq!(op, None);
        let connect = format!(r#"{{"schema":{{"type":"struct","fields":[]}},"payload":{EVENT}}}"#);
        assert_eq!(event_of(&connect).0, plain);
        let source = r#"{"version":"2.7","connector":"postgresql","name":"tracking_postgres_cdc","ts_ms":1,"db":"ecom","schema":"public","table":"events","txId":7,"lsn":123}"#;
        let insert = format!(r#"{{"before":null,"after":{EVENT},"source":{source},"op":"c","ts_ms":2}}"#);
        assert_eq!(event_of(&insert), (plain.clone(), Some(ChangeOp::Create)));
        let delete = format!(r#"{{"before":{EVENT},"after":null,"source":{source},"op":"d","ts_ms":2}}"#);
        assert_eq!(event_of(&delete), (plain.clone(), Some(ChangeOp::Delete)));
        let wrapped = format!(r#"{{"schema":{{}},"payload":{insert}}}"#);
        assert_eq!(event_of(&wrapped), (plain, Some(ChangeOp::Create)));
    }

    #[test]
    fn broken_envelopes_name_their_field() {
        for (json, field) in [
            (r#"{"op":"x","after":{}}"#, "op"),
            (r#"{"op":"c","after":null}"#, "after"),
            (r#"{"op":"d","after":{}}"#, "before"),
            (r#"{"op":"u","after":[1]}"#, "after"),
            (r#"{"payload":null}"#, "payload"),
            (r#""just a string""#, ""),
        ] {
            let err = parse_message(json.as_bytes()).unwrap_err();
            assert_eq!((err.reason, err.field.as_ref()), (InvalidReason::BadEnvelope, field), "{json}");
        }
        let err = parse_message(br#"{"event_time": "#).unwrap_err();
        assert_eq!(err.reason, InvalidReason::Malformed);
    }
}

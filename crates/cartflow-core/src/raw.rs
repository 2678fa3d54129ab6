//! An event as it arrived, before validation: every field optional and of
//! whatever JSON type the producer chose. CSV rows, JSON messages and API
//! requests all become a `RawEvent`, and `validate` makes the `Event`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::event::FIELDS;
use crate::validate::{Invalid, InvalidReason};

/// One JSON scalar, borrowed from the input where it had no escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An object or array where a scalar belongs.
    Composite,
}

impl Scalar<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Str(_) => "string",
            Self::Int(_) => "integer",
            Self::Float(_) => "number",
            Self::Bool(_) => "boolean",
            Self::Composite => "object or array",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Composite)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Composite)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The nine dataset fields, each as it arrived (`None`: absent or `null`).
#[derive(Debug, Default, Clone, PartialEq, serde::Deserialize)]
pub struct RawEvent<'a> {
    #[serde(borrow)]
    pub event_time: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub event_type: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub product_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub category_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub category_code: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub brand: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub price: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub user_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub user_session: Option<Scalar<'a>>,
}

impl<'a> RawEvent<'a> {
    /// A CSV row's fields in dataset order. Every field arrives as a string;
    /// an empty one is missing. A row with the wrong number of fields is
    /// invalid, naming the first absent (or the first extra) field.
    pub fn from_csv_fields<I, S>(fields: I) -> Result<Self, Invalid>
    where
        I: IntoIterator<Item = S>,
        S: Into<Cow<'a, str>>,
    {
        let mut raw = RawEvent::default();
        let mut n = 0;
        for f in fields {
            let f: Cow<'a, str> = f.into();
            if n < FIELDS.len() {
                let value = (!f.is_empty()).then_some(Scalar::Str(f));
                *raw.field_mut(n) = value;
            }
            n += 1;
        }
        if n != FIELDS.len() {
            let field = FIELDS.get(n).copied().unwrap_or("user_session");
            return Err(Invalid::new(
                InvalidReason::FieldCount,
                field,
                format!("expected {} CSV fields, found {n}", FIELDS.len()),
            ));
        }
        Ok(raw)
    }

    /// Splits one CSV line (RFC 4180 quoting) and reads it as `from_csv_fields`.
    pub fn from_csv_line(line: &'a [u8]) -> Result<RawEvent<'static>, Invalid> {
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(line);
        let mut rec = csv::StringRecord::new();
        match rdr.read_record(&mut rec) {
            Ok(true) => RawEvent::from_csv_fields(rec.iter().map(|s| Cow::Owned(s.to_owned()))),
            Ok(false) => Err(Invalid::new(InvalidReason::Malformed, "", "empty CSV line")),
            Err(e) => Err(Invalid::new(InvalidReason::Malformed, "", format!("not UTF-8 CSV: {e}"))),
        }
    }

    fn field_mut(&mut self, i: usize) -> &mut Option<Scalar<'a>> {
        match i {
            0 => &mut self.event_time,
            1 => &mut self.event_type,
            2 => &mut self.product_id,
            3 => &mut self.category_id,
            4 => &mut self.category_code,
            5 => &mut self.brand,
            6 => &mut self.price,
            7 => &mut self.user_id,
            _ => &mut self.user_session,
        }
    }
}

//! Row changes as Debezium's PostgreSQL connector writes them, so that
//! consumers written for Debezium read cartflow's CDC topic unchanged:
//! `{"before", "after", "source", "op", "ts_ms"}` valued by the JSON converter
//! without schemas, keyed by the primary key (`{"id": 1}`), a tombstone
//! after each delete. Columns map as Debezium's defaults with
//! `decimal.handling.mode=double` and ISO-8601 timestamps.

use chrono::{DateTime, NaiveDateTime, SecondsFormat};
use serde::Serialize;
use serde_json::{Map, Number, Value as Json};

use crate::pgoutput::{Column, Tuple, Value};

/// Debezium's placeholder for a TOASTed column the change did not send.
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

mod oid {
    pub const BOOL: u32 = 16;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const OID: u32 = 26;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const NUMERIC: u32 = 1700;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
}

/// One column's text as JSON by its type.
pub fn column_json(type_oid: u32, text: &str) -> Json {
    let number = |s: &str| s.parse::<f64>().ok().and_then(Number::from_f64).map(Json::Number);
    let converted = match type_oid {
        oid::BOOL => Some(Json::Bool(text == "t")),
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => text.parse::<i64>().ok().map(Json::from),
        oid::FLOAT4 | oid::FLOAT8 | oid::NUMERIC => number(text),
        oid::TIMESTAMPTZ => DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
            .ok()
            .map(|t| Json::String(t.to_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true))),
        oid::TIMESTAMP => NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .map(|t| Json::String(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string())),
        _ => None,
    };
    // Anything else (text, uuid, NaN, infinity…) stays PostgreSQL's text.
    converted.unwrap_or_else(|| Json::String(text.to_owned()))
}

/// A row as a JSON object, columns in table order.
pub fn row_json(columns: &[Column], tuple: &Tuple) -> Json {
    let mut row = Map::with_capacity(columns.len());
    for (c, v) in columns.iter().zip(tuple) {
        let value = match v {
            Value::Null => Json::Null,
            Value::Unchanged => Json::String(UNAVAILABLE.into()),
            Value::Text(t) => column_json(c.type_oid, t),
        };
        row.insert(c.name.clone(), value);
    }
    Json::Object(row)
}

/// The record key: the primary key (`{"id": 1}`). Not the relation's
/// replica identity, which is every column under `REPLICA IDENTITY FULL`.
pub fn key_json(pk: &Column, value: &Value) -> Vec<u8> {
    let mut key = Map::new();
    key.insert(pk.name.clone(), if let Value::Text(t) = value { column_json(pk.type_oid, t) } else { Json::Null });
    serde_json::to_vec(&Json::Object(key)).expect("serializes")
}

/// Debezium's `source` block.
#[derive(Debug, Clone, Serialize)]
pub struct Source<'a> {
    pub version: &'static str,
    pub connector: &'static str,
    /// The logical server name, the topic prefix (`tracking_postgres_cdc`).
    pub name: &'a str,
    /// Commit time of the change (snapshot: when the snapshot read it).
    pub ts_ms: i64,
    /// `true` or `last` for snapshot reads, `false` for streamed changes.
    pub snapshot: &'static str,
    pub db: &'a str,
    pub schema: &'a str,
    pub table: &'a str,
    #[serde(rename = "txId")]
    pub tx_id: Option<u32>,
    /// The commit's LSN.
    pub lsn: Option<u64>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    before: Option<&'a Json>,
    after: Option<&'a Json>,
    source: &'a Source<'a>,
    op: &'a str,
    ts_ms: i64,
}

/// The change event's bytes. `op` is c, u, d or r.
pub fn envelope(op: &str, before: Option<&Json>, after: Option<&Json>, source: &Source<'_>, now_ms: i64) -> Vec<u8> {
    serde_json::to_vec(&Envelope { before, after, source, op, ts_ms: now_ms }).expect("serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_map_as_debezium_does() {
        assert_eq!(column_json(oid::INT8, "5000088"), Json::from(5000088));
        assert_eq!(column_json(oid::NUMERIC, "293.65"), serde_json::json!(293.65));
        assert_eq!(column_json(oid::NUMERIC, "NaN"), Json::from("NaN"));
        assert_eq!(column_json(oid::BOOL, "t"), Json::Bool(true));
        assert_eq!(column_json(oid::TIMESTAMPTZ, "2019-11-01 00:00:01+00"), Json::from("2019-11-01T00:00:01Z"));
        assert_eq!(
            column_json(oid::TIMESTAMPTZ, "2019-11-01 05:30:01.25+05:30"),
            Json::from("2019-11-01T00:00:01.250Z")
        );
        assert_eq!(column_json(oid::TIMESTAMP, "2019-11-01 00:00:01"), Json::from("2019-11-01T00:00:01"));
        assert_eq!(column_json(25, "janome"), Json::from("janome"));
    }

    #[test]
    fn an_envelope_has_debeziums_fields() {
        let cols = vec![
            Column { name: "id".into(), type_oid: oid::INT8, key: true },
            Column { name: "brand".into(), type_oid: 25, key: false },
        ];
        let row = vec![Value::Text("7".into()), Value::Null];
        assert_eq!(key_json(&cols[0], &row[0]), br#"{"id":7}"#);
        let after = row_json(&cols, &row);
        let source = Source {
            version: "cartflow",
            connector: "postgresql",
            name: "tracking_postgres_cdc",
            ts_ms: 1,
            snapshot: "false",
            db: "shop",
            schema: "public",
            table: "events",
            tx_id: Some(771),
            lsn: Some(24023128),
        };
        let v: Json = serde_json::from_slice(&envelope("c", None, Some(&after), &source, 2)).unwrap();
        assert_eq!(v["after"], serde_json::json!({"id": 7, "brand": null}));
        assert_eq!(v["before"], Json::Null);
        assert_eq!((v["op"].as_str(), v["ts_ms"].as_i64()), (Some("c"), Some(2)));
        assert_eq!(v["source"]["txId"], 771);
        assert_eq!(v["source"]["lsn"], 24023128);
        assert_eq!(v["source"]["table"], "events");
    }
}

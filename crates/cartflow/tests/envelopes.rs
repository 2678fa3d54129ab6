//! Records in every accepted shape, written straight to the log as another
//! producer (Debezium, Kafka Connect) would, come out normalized.

mod common;

use std::time::Instant;

use cartflow_log::{EventLog, ProducerRecord};
use common::*;
use serde_json::{Value, json};

const CDC: &str = "tracking_postgres_cdc.public.events";

fn event(price: f64) -> Value {
    json!({"event_time": "2019-11-01T00:00:01Z", "event_type": "cart", "product_id": 5000088,
           "category_id": 2053013566100866035_i64, "category_code": "appliances.sewing_machine", "brand": "janome",
           "price": price, "user_id": 530496790, "user_session": "8e5f4f83-366c-4f70-860e-ca7417414283"})
}

#[test]
fn debezium_and_kafka_connect_envelopes_are_validated_and_tombstones_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let source = json!({"version": "2.7.0.Final", "connector": "postgresql", "name": "tracking_postgres_cdc",
                        "ts_ms": 1572566401000_i64, "db": "ecommerce", "schema": "public", "table": "events",
                        "txId": 771, "lsn": 24023128});
    let records = [
        json!({"before": null, "after": event(293.65), "source": source, "op": "r", "ts_ms": 1}),
        json!({"before": null, "after": event(293.65), "source": source, "op": "c", "ts_ms": 2}),
        json!({"schema": {"type": "struct"}, "payload": {"before": event(293.65), "after": event(280.0), "source": source, "op": "u", "ts_ms": 3}}),
        json!({"before": event(280.0), "after": null, "source": source, "op": "d", "ts_ms": 4}),
        json!({"before": null, "after": event(-1.0), "source": source, "op": "c", "ts_ms": 5}),
    ];
    let mut p = log.producer().unwrap();
    for r in &records {
        let bytes = serde_json::to_vec(r).unwrap();
        p.send(ProducerRecord::new(CDC, Some(b"{\"id\":1}"), &bytes)).unwrap();
    }
    p.send(ProducerRecord::new(CDC, Some(b"{\"id\":1}"), b"")).unwrap(); // Debezium's tombstone after a delete
    let connect = serde_json::to_vec(&json!({"schema": {"type": "struct"}, "payload": event(12.5)})).unwrap();
    p.send(ProducerRecord::new(RAW, None, &connect)).unwrap();
    p.flush().unwrap();
    drop(p);

    let out = stdout(&ok(cartflow(dir.path()).args(["validate", "--drain"])));
    assert!(out.contains("1 tombstones"), "{out}");
    let valid = read_topic(dir.path(), VALIDATED);
    let mut ops: Vec<&str> = valid.iter().map(|r| r.header_str("cartflow.op").unwrap_or("-")).collect();
    ops.sort();
    assert_eq!(ops, ["-", "c", "d", "r", "u"]);
    let update = valid.iter().find(|r| r.header_str("cartflow.op") == Some("u")).unwrap();
    let v: Value = serde_json::from_slice(&update.value).unwrap();
    assert_eq!(v["price"], 280.0);
    assert_eq!(v["event_time"], "2019-11-01T00:00:01Z");
    assert_eq!(v["category_id"], 2053013566100866035_i64);
    assert_eq!(update.key.as_deref(), Some(&b"8e5f4f83-366c-4f70-860e-ca7417414283"[..]), "keyed by session");
    let invalid = read_topic(dir.path(), INVALID);
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0].header_str("cartflow.error.reason"), Some("non_positive_price"));
    assert_eq!(invalid[0].value, serde_json::to_vec(&records[4]).unwrap(), "the original bytes, untouched");
}

#[test]
fn produce_honours_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    ok(cartflow(dir.path()).args(["produce", "--generate", "3000", "--rate", "5000"]));
    let secs = started.elapsed().as_secs_f64();
    assert!(secs >= 0.55, "3000 events at 5000/s took {secs:.2} s");
    assert_eq!(read_topic(dir.path(), RAW).len(), 3000);
}

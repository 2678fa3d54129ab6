//! Change data capture from the local PostgreSQL (wal_level=logical, set by
//! `.ci/run`): snapshot and changes in Debezium's envelope, through the
//! validator to the lake, and a capture killed and restarted.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const CDC: &str = "tracking_postgres_cdc.public.events";

/// `cartflow cdc` and `cartflow cdc seed` on a test's own database and slot.
trait Commands {
    fn cdc(&self, dir: &std::path::Path) -> Command;
    fn seed(&self, dir: &std::path::Path, events: u64, seed: u64);
}

impl Commands for CaptureSource {
    fn cdc(&self, dir: &std::path::Path) -> Command {
        let mut c = cartflow(dir);
        c.args(["cdc", "--postgres", &self.db.url(), "--slot", &self.slot]);
        c
    }

    fn seed(&self, dir: &std::path::Path, events: u64, seed: u64) {
        ok(cartflow(dir)
            .args(["cdc", "seed", "--postgres", &self.db.url(), "--events", &events.to_string()])
            .args(["--seed", &seed.to_string()]));
    }
}

fn changes(dir: &std::path::Path) -> Vec<(String, Value, Option<Value>)> {
    read_topic(dir, CDC)
        .into_iter()
        .map(|r| {
            let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
            let value = (!r.value.is_empty()).then(|| serde_json::from_slice(&r.value).unwrap());
            (key, serde_json::from_str(r.header_str("cartflow.cdc.pos").unwrap()).unwrap(), value)
        })
        .collect()
}

fn ops(dir: &std::path::Path) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for (_, _, v) in changes(dir) {
        let op = v.map_or("tombstone".to_owned(), |v| v["op"].as_str().unwrap().to_owned());
        *n.entry(op).or_default() += 1;
    }
    n
}

#[test]
fn snapshot_then_changes_reach_the_validated_topic_and_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = CaptureSource::create();
    src.seed(d, 2000, 1);
    let out = stdout(&ok(src.cdc(d).arg("--drain")));
    assert!(out.contains("2,000 snapshot rows"), "{out}");

    src.seed(d, 10, 2);
    src.db.query("UPDATE events SET price = price + 1 WHERE id IN (1, 2, 2005)");
    src.db.query("DELETE FROM events WHERE id IN (3, 2010)");
    let out = stdout(&ok(src.cdc(d).arg("--drain")));
    assert!(out.contains("10 inserts, 3 updates, 2 deletes"), "{out}");
    let n = ops(d);
    assert_eq!((n["r"], n["c"], n["u"], n["d"], n["tombstone"]), (2000, 10, 3, 2, 2), "{n:?}");

    // Debezium's envelope, keyed by the primary key.
    let all = changes(d);
    let (key, _, v) = all.iter().find(|(_, _, v)| v.as_ref().is_some_and(|v| v["op"] == "u")).unwrap();
    let v = v.as_ref().unwrap();
    assert_eq!(key, &format!(r#"{{"id":{}}}"#, v["after"]["id"]));
    assert_eq!(v["before"]["id"], v["after"]["id"]);
    let before = v["before"]["price"].as_f64().unwrap();
    assert!((v["after"]["price"].as_f64().unwrap() - before - 1.0).abs() < 1e-9);
    let source = &v["source"];
    assert_eq!((source["schema"].as_str(), source["table"].as_str()), (Some("public"), Some("events")));
    assert_eq!(source["db"].as_str(), Some(src.db.name.as_str()));
    assert!(source["lsn"].as_u64().unwrap() > 0 && source["txId"].as_u64().unwrap() > 0);
    assert!(v["ts_ms"].as_i64().unwrap() > 0 && source["ts_ms"].as_i64().unwrap() > 0);
    assert!(v["after"]["event_time"].as_str().unwrap().ends_with('Z'));
    let (_, _, deleted) = all.iter().find(|(_, _, v)| v.as_ref().is_some_and(|v| v["op"] == "d")).unwrap();
    assert!(deleted.as_ref().unwrap()["after"].is_null());
    assert_eq!(all.iter().filter(|(_, _, v)| v.as_ref().is_some_and(|v| v["source"]["snapshot"] == "last")).count(), 1);

    // Downstream: every change is one validated event; the lake keeps its op.
    ok(cartflow(d).args(["validate", "--drain"]));
    let validated = read_topic(d, VALIDATED);
    assert_eq!(validated.len(), 2015);
    let mut by_op: HashMap<String, usize> = HashMap::new();
    for r in &validated {
        *by_op.entry(r.header_str("cartflow.op").unwrap_or_default().to_owned()).or_default() += 1;
    }
    assert_eq!((by_op["r"], by_op["c"], by_op["u"], by_op["d"]), (2000, 10, 3, 2));
    ok(cartflow(d).args(["lake-sink", "--drain"]));
    let sql = stdout(&ok(cartflow(d).args([
        "sql",
        "--format",
        "csv",
        "SELECT _op, count(*) AS n FROM bronze.events GROUP BY _op ORDER BY _op",
    ])));
    assert!(sql.contains("d,2") && sql.contains("u,3") && sql.contains("c,10") && sql.contains("r,2000"), "{sql}");
    // The online store takes deletes back.
    let features = stdout(&ok(cartflow(d).args(["features", "stream", "--drain"])));
    assert!(features.contains(" 2 deletes"), "{features}");
}

#[test]
fn a_capture_killed_and_restarted_neither_loses_nor_repeats_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = CaptureSource::create();
    src.seed(d, 5000, 4);
    // Inserts keep coming while the capture is killed and restarted.
    let mut writer = cartflow(d)
        .args(["cdc", "seed", "--postgres", &src.db.url(), "--events", "6000", "--rate", "2000", "--seed", "5"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut kills = 0;
    while writer.try_wait().unwrap().is_none() || kills < 3 {
        let mut capture = src.cdc(d).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300 + 250 * (kills % 3)));
        capture.kill().unwrap(); // SIGKILL
        capture.wait().unwrap();
        kills += 1;
        assert!(started.elapsed() < Duration::from_secs(120));
    }
    assert!(writer.wait().unwrap().success());
    src.db.query("DELETE FROM events WHERE id % 100 = 7");
    ok(src.cdc(d).arg("--drain"));

    let rows: usize = src.db.query("SELECT count(*) FROM events").parse().unwrap();
    let mut live: HashMap<String, i32> = HashMap::new();
    for (key, _, v) in changes(d) {
        match v.as_ref().map(|v| v["op"].as_str().unwrap().to_owned()).as_deref() {
            Some("r") | Some("c") => *live.entry(key).or_default() += 1,
            Some("d") => *live.entry(key).or_default() -= 1,
            _ => {}
        }
    }
    let twice: Vec<_> = live.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "rows captured twice: {twice:?}");
    assert_eq!(live.values().filter(|n| **n == 1).count(), rows, "rows in the table vs rows captured");
    assert_eq!(live.len(), 11_000, "every inserted row was captured");
    assert!(kills >= 3);
}

/// The README's order: produce, validate, then the capture — the validator's
/// subscription must not make the CDC topic with the wrong shape; a data
/// directory where an older one did says how to fix it, and the fix works.
fn readme_order(
    d: &std::path::Path,
    configure: &dyn Fn(&mut Command) -> &mut Command,
    log: &dyn cartflow_log::EventLog,
) {
    let src = CaptureSource::create();
    src.seed(d, 300, 3);
    ok(configure(cartflow(d).args(["produce", "--generate", "1000"])));
    ok(configure(cartflow(d).args(["validate", "--drain"])));
    let out = stdout(&ok(configure(src.cdc(d).arg("--drain"))));
    assert!(out.contains("300"), "{out}");
    assert_eq!(log.topic(CDC).unwrap().unwrap().partitions.len(), 1);

    // A topic of the wrong shape, as older subscribers made it.
    ok(configure(cartflow(d).args(["topics", "delete", CDC, "--force"])));
    log.ensure_topic(CDC, 4).unwrap();
    let other = CaptureSource::create();
    other.seed(d, 10, 4);
    let failed = configure(other.cdc(d).arg("--drain")).output().unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success() && stderr.contains(&format!("cartflow topics delete {CDC}")), "{stderr}");
    ok(configure(cartflow(d).args(["topics", "delete", CDC])));
    ok(configure(other.cdc(d).arg("--drain")));
    assert_eq!(log.topic(CDC).unwrap().unwrap().partitions.len(), 1);
    ok(configure(cartflow(d).args(["validate", "--drain"])));
}

#[test]
fn the_readmes_order_produce_validate_cdc_works_on_the_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    readme_order(dir.path(), &|c| c, &open_log(dir.path()));
}

#[test]
fn the_readmes_order_produce_validate_cdc_works_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker = needs!(KafkaBroker::start(dir.path()));
    readme_order(dir.path(), &|c| broker.configure(c), &broker.log());
}

#[test]
fn a_capture_never_drops_or_takes_a_slot_it_does_not_own() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = CaptureSource::create();
    a.seed(one.path(), 50, 5);
    ok(a.cdc(one.path()).arg("--drain"));
    assert!(a.slot_exists());

    // Another database, the same slot name: refused, naming the slot, its database and --slot.
    let b = CaptureSource::create();
    b.seed(two.path(), 50, 6);
    let out =
        cartflow(two.path()).args(["cdc", "--postgres", &b.db.url(), "--slot", &a.slot, "--drain"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&a.slot) && stderr.contains(&a.db.name) && stderr.contains("--slot"), "{stderr}");
    assert!(a.slot_exists(), "the other database's slot was dropped");

    // A slot of this database that the capture did not make, with an empty topic: refused, kept.
    b.db.query(&format!("SELECT 'made' FROM pg_create_logical_replication_slot('{}', 'pgoutput')", b.slot));
    let out = b.cdc(two.path()).arg("--drain").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("did not make it"), "{stderr}");
    assert!(b.slot_exists());

    // A slot in use by a running capture: the second is refused and the first goes on.
    let mut running = a.cdc(one.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    let held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    while a.db.query(held) == "0" {
        assert!(started.elapsed() < Duration::from_secs(30), "the capture did not take its slot");
        std::thread::sleep(Duration::from_millis(100));
    }
    let three = tempfile::tempdir().unwrap();
    let out = a.cdc(three.path()).arg("--drain").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("in use"), "{stderr}");
    let _ = running.kill();
    let _ = running.wait();
    assert!(a.slot_exists());
}

//! Distributed mode: the same stages on a real Kafka-protocol broker (nisshi),
//! and validators scaling out in one consumer group.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use cartflow_log::EventLog;
use common::*;

#[test]
fn every_streaming_stage_runs_unchanged_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = needs!(KafkaBroker::start(d));
    let out = ok(broker.configure(&mut cartflow(d)).args([
        "produce",
        "--generate",
        "30000",
        "--inject-invalid",
        "0.05",
        "--seed",
        "3",
    ]));
    assert!(stdout(&out).contains("30,000"), "{}", stdout(&out));
    ok(broker.configure(&mut cartflow(d)).args(["validate", "--drain"]));
    let log = broker.log();
    let (valid, invalid) = assert_exactly_once_on(&log);
    assert_eq!(valid + invalid, 30_000);
    assert!(invalid > 1000, "about 5% invalid: {invalid}");
    // Keys hash as with Kafka's Java client: every session sits in one partition.
    let mut partition_of = std::collections::HashMap::new();
    for r in read_all(&log, VALIDATED) {
        if let Some(key) = r.key.clone() {
            assert_eq!(*partition_of.entry(key).or_insert(r.partition), r.partition);
        }
    }
    assert!(partition_of.len() > 1000);

    let lake = ok(broker.configure(&mut cartflow(d)).args(["lake-sink", "--drain"]));
    let (events, bad) = assert_lake_exactly_once_on(&log, &d.join("data/lake"));
    assert_eq!((events, bad), (valid, invalid), "{}", stdout(&lake));
    let features = stdout(&ok(broker.configure(&mut cartflow(d)).args(["features", "stream", "--drain"])));
    assert!(features.contains(&thousands(valid)), "{features}");

    // `topics` shows the groups' committed offsets from the broker.
    let topics = stdout(&ok(broker.configure(&mut cartflow(d)).arg("topics")));
    assert!(topics.contains("cartflow-validator") && topics.contains(VALIDATED), "{topics}");
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The last "partitions rebalanced" line a stage logged.
fn last_assignment(log: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().rfind(|l| l.contains("partitions rebalanced")).map(str::to_owned)
}

/// How many partitions a stage held after its last rebalance.
fn assigned(log: &std::path::Path) -> usize {
    last_assignment(log).and_then(|l| l.split("assigned=").nth(1)?.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// The validators' inputs: the raw topic's 4 partitions and the CDC topic's one.
const INPUT_PARTITIONS: usize = 5;

/// Total records in validated + invalid.
fn outputs(log: &dyn EventLog) -> u64 {
    [VALIDATED, INVALID].iter().filter_map(|t| log.topic(t).unwrap()).map(|t| t.records()).sum()
}

#[test]
fn two_validators_share_the_partitions_and_one_killed_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = needs!(KafkaBroker::start(d));
    let total = 1_000_000u64;
    // A few events first, so the topics exist for the two to split; the rest
    // once they have: validators that start on all of it can finish it
    // before the second one joins, and the kill would come too late.
    let first = 1_000u64;
    ok(broker.configure(&mut cartflow(d)).args(["produce", "--generate", &first.to_string(), "--seed", "9"]));
    let validator = |name: &str| {
        let log = std::fs::File::create(d.join(format!("{name}.log"))).unwrap();
        broker
            .configure(&mut cartflow(d))
            .env("CARTFLOW_KAFKA__SESSION_TIMEOUT_MS", "6000")
            // Small batches, so the kill lands mid-stream.
            .env("CARTFLOW_VALIDATOR__BATCH_SIZE", "2000")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .arg("validate")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut a = validator("a");
    let mut b = validator("b");
    let log = broker.log();
    // Both members hold partitions once their second rebalance settles.
    let started = Instant::now();
    let held = |name: &str| assigned(&d.join(format!("{name}.log")));
    while !(held("a") > 0 && held("b") > 0 && held("a") + held("b") == INPUT_PARTITIONS) {
        assert!(started.elapsed() < Duration::from_secs(60), "the two validators never split the partitions");
        std::thread::sleep(Duration::from_millis(100));
    }
    // In the background: the kill lands while records still arrive.
    let mut producer = broker
        .configure(&mut cartflow(d))
        .args(["produce", "--generate", &(total - first).to_string(), "--seed", "10"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |n: u64| {
        let started = Instant::now();
        while outputs(&log) < n {
            assert!(started.elapsed() < Duration::from_secs(120), "validators stalled at {}", outputs(&log));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Early: reading the outputs' ends takes up to a second, in which the
    // two validators write tens of thousands of records.
    wait_for(total / 10);
    a.kill().unwrap(); // SIGKILL, mid-batch
    a.wait().unwrap();
    let at_kill = outputs(&log);
    assert!(at_kill < total, "the kill came too late to prove anything");
    assert!(producer.wait().unwrap().success(), "the second produce failed");
    wait_for(total);
    // Let a late duplicate, if any, arrive before counting.
    std::thread::sleep(Duration::from_secs(2));
    let _ = std::process::Command::new("kill").arg("-INT").arg(b.id().to_string()).status();
    b.wait().unwrap();
    let (valid, invalid) = assert_exactly_once_on(&log);
    assert_eq!((valid + invalid) as u64, total);
    let b = last_assignment(&d.join("b.log"));
    assert_eq!(assigned(&d.join("b.log")), INPUT_PARTITIONS, "b took over a's partitions: {b:?}");
}

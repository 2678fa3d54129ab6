//! Helpers for the end-to-end tests: they run the real `cartflow` binary as
//! child processes on a data directory of their own, and read the embedded
//! log back with `cartflow-log` to check what landed.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use cartflow_log::{ConsumerConfig, EmbeddedLog, EmbeddedOptions, EventLog, OffsetReset, Record};

pub const RAW: &str = "tracking.raw_user_behavior";
pub const VALIDATED: &str = "tracking.user_behavior.validated";
pub const INVALID: &str = "tracking.user_behavior.invalid";

/// `cartflow` with a clean environment and `--data-dir dir`.
pub fn cartflow(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cartflow"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CARTFLOW_") {
            c.env_remove(k);
        }
    }
    c.current_dir(dir).arg("--data-dir").arg(dir.join("data")).arg("--quiet");
    c
}

/// Runs to completion and fails the test, showing stderr, when it fails.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("cartflow runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn open_log(dir: &Path) -> EmbeddedLog {
    EmbeddedLog::open(dir.join("data/log"), EmbeddedOptions::default()).unwrap()
}

/// Every record of a topic.
pub fn read_topic(dir: &Path, topic: &str) -> Vec<Record> {
    let log = open_log(dir);
    let mut c = log.consumer(ConsumerConfig::topics(&[topic], OffsetReset::Earliest)).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = c.poll(50_000, Duration::from_millis(50)).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

/// Checks that every raw record has exactly one output across validated and
/// invalid, and returns (valid, invalid) counts.
pub fn assert_exactly_once(dir: &Path) -> (usize, usize) {
    let raw = read_topic(dir, RAW);
    let valid = read_topic(dir, VALIDATED);
    let invalid = read_topic(dir, INVALID);
    let mut seen: HashMap<String, u32> = HashMap::new();
    for r in valid.iter().chain(&invalid) {
        let src = r.header_str("cartflow.src").expect("every output names its input").to_owned();
        *seen.entry(src).or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(duplicated.is_empty(), "inputs with more than one output: {duplicated:?}");
    let missing: Vec<String> = raw
        .iter()
        .map(|r| format!("{}/{}/{}", r.topic, r.partition, r.offset))
        .filter(|k| !seen.contains_key(k))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "inputs with no output: {missing:?}");
    assert_eq!(seen.len(), raw.len(), "outputs for inputs that do not exist");
    (valid.len(), invalid.len())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn real_data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real").join(name)
}

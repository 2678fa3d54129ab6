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

/// Sum of the partitions' end offsets: where a stage that read it all stands.
fn ends(log: &dyn EventLog, topics: &[&str]) -> u64 {
    topics.iter().filter_map(|t| log.topic(t).unwrap()).flat_map(|t| t.partitions).map(|p| p.end).sum()
}

/// A long-running stage on the broker, logging to `<name>.log`.
fn spawn_stage(
    broker: &KafkaBroker,
    d: &std::path::Path,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Child {
    let log = std::fs::File::create(d.join(format!("{name}.log"))).unwrap();
    let mut cmd = cartflow(d);
    broker.configure(&mut cmd).env("CARTFLOW_KAFKA__SESSION_TIMEOUT_MS", "6000").env("RUST_LOG", "info");
    cmd.env("NO_COLOR", "1").args(args).stdout(Stdio::null()).stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// `produce --generate n`, 2 % of it damaged.
fn producing(broker: &KafkaBroker, d: &std::path::Path, n: u64, seed: &str) -> std::process::Command {
    let mut cmd = cartflow(d);
    broker.configure(&mut cmd).args([
        "produce",
        "--generate",
        &n.to_string(),
        "--inject-invalid",
        "0.02",
        "--seed",
        seed,
    ]);
    cmd.stdout(Stdio::null());
    cmd
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every cart's features from `store`, against one state of all the validated events.
fn assert_store_is_one_state_of(log: &dyn EventLog, store: &dyn cartflow_online::OnlineStore, what: &str) -> usize {
    let events: Vec<cartflow_core::Event> =
        read_all(log, VALIDATED).iter().map(|r| cartflow_core::Event::from_json(&r.value).unwrap()).collect();
    conformance::assert_one_state_of(store, &events, what).0
}

#[test]
fn lake_sinks_and_feature_streamers_scale_out_and_a_kill_9_of_each_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = needs!(KafkaBroker::start(d));
    let redis = RedisPrefix::new("scale-out");
    let total = 1_000_000u64;
    // The topics first, so the four stage processes split their partitions
    // before the stream comes: stages that start on all of it could finish
    // it before the second one joins.
    let first = 1_000u64;
    let produce = |n: u64, seed: &str| producing(&broker, d, n, seed);
    ok(&mut produce(first, "9"));
    ok(broker.configure(&mut cartflow(d)).args(["validate", "--drain"]));
    let sink_env = [("CARTFLOW_LAKE_SINK__MAX_RECORDS", "20000"), ("CARTFLOW_LAKE_SINK__MAX_AGE_SECS", "1")];
    let online = ["features", "stream", "--online", &redis.url];
    let streamer_env =
        [("CARTFLOW_FEATURES__REDIS_PREFIX", redis.prefix.as_str()), ("CARTFLOW_FEATURES__STREAMER__BATCH", "2000")];
    let mut sink_a = spawn_stage(&broker, d, "sink-a", &["lake-sink"], &sink_env);
    let mut sink_b = spawn_stage(&broker, d, "sink-b", &["lake-sink"], &sink_env);
    let mut feat_a = spawn_stage(&broker, d, "feat-a", &online, &streamer_env);
    let mut feat_b = spawn_stage(&broker, d, "feat-b", &online, &streamer_env);
    let held = |name: &str| assigned(&d.join(format!("{name}.log")));
    // Sinks read validated and invalid (4 partitions each), streamers validated.
    wait_until("the two sinks and the two streamers split the partitions", Duration::from_secs(90), || {
        held("sink-a") > 0
            && held("sink-b") > 0
            && held("sink-a") + held("sink-b") == 8
            && held("feat-a") > 0
            && held("feat-b") > 0
            && held("feat-a") + held("feat-b") == 4
    });
    let mut validator = spawn_stage(&broker, d, "validator", &["validate"], &[]);
    let mut producer = produce(total - first, "10").spawn().unwrap();

    let log = broker.log();
    let lake_dir = d.join("data/lake");
    let lake = cartflow_lake::Lake::open(lake_dir.to_str().unwrap(), cartflow_lake::layout::SINK_WRITER).unwrap();
    let landed = || lake.committed_offsets().unwrap().values().sum::<u64>();
    let store =
        cartflow_online::RedisStore::open(&redis.url, &redis.prefix, cartflow_features::DEFAULT_SESSION_TTL).unwrap();
    let streamed = || cartflow_online::OnlineStore::offsets(&store).unwrap().iter().map(|o| o.offset).sum::<u64>();

    wait_until("the lake sinks landing a sixth", Duration::from_secs(120), || landed() >= total / 6);
    sink_a.kill().unwrap(); // SIGKILL, mid-stream
    sink_a.wait().unwrap();
    let at_kill = landed();
    wait_until("the streamers taking in a fifth", Duration::from_secs(120), || streamed() >= total / 5);
    feat_a.kill().unwrap();
    feat_a.wait().unwrap();
    let streamed_at_kill = streamed();
    let mut sink_a = spawn_stage(&broker, d, "sink-a2", &["lake-sink"], &sink_env);
    let mut feat_a = spawn_stage(&broker, d, "feat-a2", &online, &streamer_env);

    assert!(producer.wait().unwrap().success(), "the second produce failed");
    wait_until("the validator finishing", Duration::from_secs(180), || outputs(&log) >= total);
    let inputs = ends(&log, &[VALIDATED, INVALID]);
    let validated = ends(&log, &[VALIDATED]);
    assert!(at_kill < inputs && streamed_at_kill < validated, "the kills came too late to prove anything");
    wait_until("the lake catching up", Duration::from_secs(180), || landed() == inputs);
    wait_until("the online store catching up", Duration::from_secs(180), || streamed() == validated);
    for child in [&mut sink_a, &mut sink_b, &mut feat_a, &mut feat_b, &mut validator] {
        let _ = std::process::Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
        child.wait().unwrap();
    }
    // Both survivors and both restarts held partitions at some point.
    for name in ["sink-b", "sink-a2", "feat-b", "feat-a2"] {
        assert!(last_assignment(&d.join(format!("{name}.log"))).is_some(), "{name} never held a partition");
    }

    let (valid, invalid) = assert_exactly_once_on(&log);
    assert_eq!((valid + invalid) as u64, total);
    assert_eq!(assert_lake_exactly_once_on(&log, &lake_dir), (valid, invalid), "every record in the lake once");
    let carts = assert_store_is_one_state_of(&log, &store, "streamed by two, one killed");
    assert!(carts > 10_000, "{carts} carts");

    // The lake's silver, materialized per partition, is the same state.
    ok(broker.configure(&mut cartflow(d)).args(["warehouse", "build"]));
    let again = RedisPrefix::new("scale-out-materialized");
    ok(broker
        .configure(&mut cartflow(d))
        .args(["features", "materialize", "--online", &again.url])
        .env("CARTFLOW_FEATURES__REDIS_PREFIX", &again.prefix));
    let materialized =
        cartflow_online::RedisStore::open(&again.url, &again.prefix, cartflow_features::DEFAULT_SESSION_TTL).unwrap();
    assert_store_is_one_state_of(&log, &materialized, "materialized");
}

#[test]
fn feature_streamers_share_a_redis_cluster_and_a_kill_9_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = needs!(KafkaBroker::start(d));
    let cluster = needs!(RedisCluster::start(d));
    let total = 300_000u64;
    ok(&mut producing(&broker, d, 1_000, "5"));
    ok(broker.configure(&mut cartflow(d)).args(["validate", "--drain"]));
    let url = cluster.url();
    let online = ["features", "stream", "--online", url.as_str()];
    let env = [("CARTFLOW_FEATURES__STREAMER__BATCH", "1000")];
    let mut a = spawn_stage(&broker, d, "feat-a", &online, &env);
    let mut b = spawn_stage(&broker, d, "feat-b", &online, &env);
    let held = |name: &str| assigned(&d.join(format!("{name}.log")));
    wait_until("the two streamers split the partitions", Duration::from_secs(90), || {
        held("feat-a") > 0 && held("feat-b") > 0 && held("feat-a") + held("feat-b") == 4
    });
    let mut validator = spawn_stage(&broker, d, "validator", &["validate"], &[]);
    let mut producer = producing(&broker, d, total - 1_000, "6").spawn().unwrap();
    let log = broker.log();
    let store = cartflow_online::RedisStore::open(&url, "cartflow", cartflow_features::DEFAULT_SESSION_TTL).unwrap();
    let streamed = || cartflow_online::OnlineStore::offsets(&store).unwrap().iter().map(|o| o.offset).sum::<u64>();
    wait_until("the streamers taking in a fifth", Duration::from_secs(120), || streamed() >= total / 5);
    a.kill().unwrap(); // SIGKILL, mid-stream
    a.wait().unwrap();
    let at_kill = streamed();
    let mut a = spawn_stage(&broker, d, "feat-a2", &online, &env);
    assert!(producer.wait().unwrap().success(), "the second produce failed");
    wait_until("the validator finishing", Duration::from_secs(180), || outputs(&log) >= total);
    let validated = ends(&log, &[VALIDATED]);
    assert!(at_kill < validated, "the kill came too late to prove anything");
    wait_until("the cluster store catching up", Duration::from_secs(180), || streamed() == validated);
    for child in [&mut a, &mut b, &mut validator] {
        let _ = std::process::Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
        child.wait().unwrap();
    }
    let carts = assert_store_is_one_state_of(&log, &store, "streamed by two into a cluster, one killed");
    assert!(carts > 3_000, "{carts} carts");
    let spread = cluster.keys_per_node();
    assert!(spread.iter().all(|n| *n > 1_000), "keys per node: {spread:?}");
}

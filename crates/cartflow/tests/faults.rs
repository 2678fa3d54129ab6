//! The backing services fail under a running pipeline, and cartflow rides it
//! out: the Kafka broker killed and started again 20 s later (its storage in
//! SQLite, so it keeps what it acknowledged), the S3 server away for 30 s
//! under the lake sink, Redis killed and started again under the feature
//! streamer, PostgreSQL restarted under a CDC capture and the registry, the
//! data directory's disk full under the validator, the lake sink and the
//! online store's snapshots. The stages wait, say so
//! in `/health` and their metrics, start again from their recovery, and
//! every input still lands once.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cartflow_log::EventLog;
use common::*;

const CDC: &str = "tracking_postgres_cdc.public.events";

/// A stage process on the broker, with `/metrics` and `/health` on `port`.
fn stage(d: &std::path::Path, broker: &KafkaBroker, name: &str, args: &[&str], port: u16) -> Child {
    let log = std::fs::File::create(d.join(format!("{name}.log"))).unwrap();
    let mut cmd = cartflow(d);
    broker.configure(&mut cmd).env("RUST_LOG", "info").env("NO_COLOR", "1");
    cmd.args(args).args(["--metrics-addr", &format!("127.0.0.1:{port}")]);
    cmd.env("CARTFLOW_KAFKA__SESSION_TIMEOUT_MS", "6000").stdout(Stdio::null()).stderr(log);
    let child = cmd.spawn().unwrap();
    wait_for_port(port, name, Duration::from_secs(60));
    child
}

/// A client that hands back error statuses as answers, and gives up after `secs`.
fn agent(secs: u64) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(secs)))
        .build()
        .new_agent()
}

/// `/health`'s status code, or 0 when nothing answers.
fn health(port: u16) -> u16 {
    agent(2).get(format!("http://127.0.0.1:{port}/health")).call().map_or(0, |r| r.status().as_u16())
}

/// The sum of a counter's series on a stage's `/metrics`.
fn counter(port: u16, token: &str, name: &str) -> f64 {
    let page = ureq::get(format!("http://127.0.0.1:{port}/metrics"))
        .header("authorization", format!("Bearer {token}"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    page.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits for `done`, polling `/health` of `ports` meanwhile: whether any
/// said 503. Past `within` it fails with the end of each `*.log` in `logs`.
fn wait_watching(
    logs: &std::path::Path,
    what: &str,
    within: Duration,
    ports: &[u16],
    mut done: impl FnMut() -> bool,
) -> bool {
    let started = Instant::now();
    let mut waiting_seen = false;
    while !done() {
        waiting_seen |= ports.iter().any(|p| health(*p) == 503);
        if started.elapsed() > within {
            panic!("{what}: not within {within:?}\n{}", log_tails(logs));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    waiting_seen
}

/// The last lines of every `*.log` in `dir`, for a failure's message.
fn log_tails(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out += &format!("--- {}\n{}\n", path.display(), lines[lines.len().saturating_sub(15)..].join("\n"));
        }
    }
    out
}

/// Sum of the partitions' end offsets.
fn ends(log: &dyn EventLog, topics: &[&str]) -> u64 {
    topics.iter().filter_map(|t| log.topic(t).unwrap()).flat_map(|t| t.partitions).map(|p| p.end).sum()
}

fn produce(d: &std::path::Path, broker: &KafkaBroker, n: u64, seed: &str) {
    let mut cmd = cartflow(d);
    broker.configure(&mut cmd).args(["produce", "--generate", &n.to_string(), "--inject-invalid", "0.02"]);
    ok(cmd.args(["--seed", seed]).stdout(Stdio::null()));
}

#[test]
fn the_pipeline_rides_out_the_broker_s3_and_redis_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut broker = needs!(KafkaBroker::start_durable(d));
    let mut s3 = needs!(S3Server::start(d, "lake"));
    let mut redis = RedisServer::start(d);
    let half = 100_000u64;
    produce(d, &broker, half, "21");

    // 0. The stages start while the broker is away (a host's boot, compose without start-order
    // dependencies): each waits for it, says so on /health, and goes on once it is there.
    broker.stop();
    let ports = [free_port(), free_port(), free_port()];
    let mut validator = stage(d, &broker, "validate", &["validate"], ports[0]);
    let mut sink = {
        let log = std::fs::File::create(d.join("lake-sink.log")).unwrap();
        let mut cmd = cartflow(d);
        broker.configure(s3.configure(&mut cmd)).env("RUST_LOG", "info").env("NO_COLOR", "1");
        cmd.args(["lake-sink", "--lake", "s3://lake/l"]).args(["--metrics-addr", &format!("127.0.0.1:{}", ports[1])]);
        cmd.env("CARTFLOW_LAKE_SINK__MAX_RECORDS", "20000").env("CARTFLOW_LAKE_SINK__MAX_AGE_SECS", "1");
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        wait_for_port(ports[1], "lake-sink", Duration::from_secs(60));
        child
    };
    let mut streamer = stage(d, &broker, "features", &["features", "stream", "--online", &redis.url()], ports[2]);
    wait_watching(d, "each stage saying it waits for the broker", Duration::from_secs(60), &[], || {
        ports.iter().all(|p| health(*p) == 503)
    });
    broker.start_again();
    let token = std::fs::read_to_string(d.join("data/auth/token")).unwrap().trim().to_owned();
    let log = broker.log();
    let lake_dir = s3.root.join("lake/l");
    let lake = cartflow_lake::Lake::open(lake_dir.to_str().unwrap(), cartflow_lake::layout::SINK_WRITER).unwrap();
    let landed = |lake: &cartflow_lake::Lake| lake.committed_offsets().unwrap().values().sum::<u64>();
    let store =
        cartflow_online::RedisStore::open(&redis.url(), "cartflow", cartflow_features::DEFAULT_SESSION_TTL).unwrap();
    let streamed = |store: &cartflow_online::RedisStore| {
        cartflow_online::OnlineStore::offsets(store).map_or(0, |o| o.iter().map(|o| o.offset).sum::<u64>())
    };
    wait_watching(d, "the stages starting on the first half", Duration::from_secs(120), &[], || {
        ends(&log, &[VALIDATED, INVALID]) >= half / 2 && landed(&lake) > 0 && streamed(&store) > 0
    });

    // 1. The broker goes away for 20 s while the second half is produced into it.
    let producer = {
        let mut cmd = cartflow(d);
        broker.configure(&mut cmd).args(["produce", "--generate", &half.to_string(), "--seed", "22"]);
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(d.join("produce.log")).unwrap()).spawn().unwrap()
    };
    std::thread::sleep(Duration::from_secs(2));
    broker.stop();
    let down = Instant::now();
    let mut said_waiting = false;
    while down.elapsed() < Duration::from_secs(20) {
        said_waiting |= ports.iter().any(|p| health(*p) == 503);
        std::thread::sleep(Duration::from_millis(500));
    }
    broker.start_again();
    let log = broker.log();
    eprintln!("broker back after {:.1} s; a stage said it waited: {said_waiting}", down.elapsed().as_secs_f64());
    let out = producer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "produce across the broker's restart: {}",
        std::fs::read_to_string(d.join("produce.log")).unwrap()
    );
    let inputs = ends(&log, &[RAW]);
    assert_eq!(inputs, 2 * half, "the broker kept every record it acknowledged, once");
    wait_watching(d, "the validator catching up after the broker", Duration::from_secs(300), &ports, || {
        ends(&log, &[VALIDATED, INVALID]) >= inputs
    });

    // 2. The S3 server goes away for 30 s while the lake sink commits.
    s3.stop();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(30) {
        said_waiting |= health(ports[1]) == 503;
        std::thread::sleep(Duration::from_millis(500));
    }
    s3.start_again();

    // 3. Redis is killed and started again from its append-only file.
    redis.stop();
    std::thread::sleep(Duration::from_secs(3));
    said_waiting |= health(ports[2]) == 503;
    redis.start_again();
    let store =
        cartflow_online::RedisStore::open(&redis.url(), "cartflow", cartflow_features::DEFAULT_SESSION_TTL).unwrap();

    let outputs = ends(&log, &[VALIDATED, INVALID]);
    let validated = ends(&log, &[VALIDATED]);
    said_waiting |=
        wait_watching(d, "the lake catching up", Duration::from_secs(300), &ports, || landed(&lake) == outputs);
    said_waiting |= wait_watching(d, "the online store catching up", Duration::from_secs(300), &ports, || {
        streamed(&store) == validated
    });
    let restarts: f64 = ports.iter().map(|p| counter(*p, &token, "cartflow_stage_restarts_total")).sum();
    eprintln!("stage restarts: {restarts}; a stage said it waited: {said_waiting}");
    for p in ports {
        assert_eq!(health(p), 200, "every stage healthy again");
    }
    for (name, child) in [("validate", &mut validator), ("lake-sink", &mut sink), ("features", &mut streamer)] {
        let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
        let status = child.wait().unwrap();
        assert!(status.success(), "{name} stopped with {status}\n{}", log_tails(d));
    }
    assert!(restarts >= 1.0 && said_waiting, "the outages went unnoticed: {restarts} restarts");

    let (valid, invalid) = assert_exactly_once_on(&log);
    assert_eq!((valid + invalid) as u64, 2 * half);
    assert_eq!(assert_lake_exactly_once_on(&log, &lake_dir), (valid, invalid), "every record in the lake once");
    let events: Vec<cartflow_core::Event> =
        read_all(&log, VALIDATED).iter().map(|r| cartflow_core::Event::from_json(&r.value).unwrap()).collect();
    let carts = conformance::assert_one_state_of(&store, &events, "streamed across a Redis restart").0;
    assert!(carts > 1_000, "{carts} carts");
}

/// A file system of its own, `mb` large, unmounted when dropped (mounting
/// needs root, which CI has here).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path, mb: u32) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a {mb} MB tmpfs at {}: {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the small disk at `d` until about `leave` bytes are free; the
/// filler file, to remove when space is to be freed.
fn fill_leaving(d: &std::path::Path, leave: u64) -> std::path::PathBuf {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(d).output().unwrap();
    let free = String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse::<u64>().unwrap();
    let filler = d.join("filler");
    std::fs::write(&filler, vec![0u8; free.saturating_sub(leave) as usize]).unwrap();
    filler
}

/// Runs the stage `args` (with `--drain`) on the full disk at `d`: it must
/// fail with the disk's error, say it waits in `/health`, and once `filler`
/// is removed go on and finish. Its log is `logs/<name>.log`.
fn ride_out_a_full_disk(
    logs: &std::path::Path,
    d: &std::path::Path,
    name: &str,
    args: &[&str],
    filler: &std::path::Path,
) {
    let port = free_port();
    let log_path = logs.join(format!("{name}.log"));
    let mut stage = cartflow(d)
        .args(args)
        .args(["--drain", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(port, name, Duration::from_secs(60));
    wait_watching(logs, &format!("{name} saying it waits for space"), Duration::from_secs(120), &[], || {
        health(port) == 503
    });
    let said = std::fs::read_to_string(&log_path).unwrap();
    assert!(said.contains("No space left on device"), "the disk's error is said: {said}");
    std::fs::remove_file(filler).unwrap();
    let status = stage.wait().unwrap();
    let said = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "{name} went on once space was freed: {said}");
}

/// 60,000 events (2 % damaged) in the log of a data directory on a 48 MB
/// disk of its own; with `validated`, through the validator too.
fn events_on_a_small_disk(dir: &std::path::Path, validated: bool) -> (SmallDisk, u64) {
    let disk = SmallDisk::mount(&dir.join("disk"), 48);
    let events = 60_000u64;
    ok(cartflow(&disk.0)
        .args(["produce", "--generate", &events.to_string(), "--inject-invalid", "0.02"])
        .stdout(Stdio::null()));
    if validated {
        ok(cartflow(&disk.0).args(["validate", "--drain"]).stdout(Stdio::null()));
    }
    (disk, events)
}

/// The data directory's disk fills up under the validator: it stops with
/// the disk's error, says it waits, corrupts nothing, and once space is
/// freed it goes on, every raw record once downstream.
#[test]
fn a_full_disk_stops_the_validator_until_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, events) = events_on_a_small_disk(dir.path(), false);
    let d = disk.0.as_path();
    // Leave about 2 MB: the validated topic needs several times that.
    let filler = fill_leaving(d, 2 << 20);
    ride_out_a_full_disk(dir.path(), d, "validate", &["validate"], &filler);
    let (valid, invalid) = assert_exactly_once(d);
    assert_eq!((valid + invalid) as u64, events);
}

/// The disk fills up under the lake sink (a lake on the local disk): it
/// waits, commits nothing partial, and once space is freed every validated
/// and invalid record lands in the lake once.
#[test]
fn a_full_disk_stops_the_lake_sink_until_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, events) = events_on_a_small_disk(dir.path(), true);
    let d = disk.0.as_path();
    // The lake's Parquet files for 60,000 events take a few MB.
    let filler = fill_leaving(d, 256 << 10);
    ride_out_a_full_disk(dir.path(), d, "lake-sink", &["lake-sink"], &filler);
    let (valid, invalid) = assert_exactly_once(d);
    assert_eq!((valid + invalid) as u64, events);
    assert_eq!(assert_lake_exactly_once(d, &d.join("data/lake")), (valid, invalid), "every record in the lake once");
}

/// The disk fills up under the embedded online store's snapshots: the
/// streamer waits, the snapshot on disk stays whole, and once space is
/// freed the snapshot it writes holds one state of every validated event.
#[test]
fn a_full_disk_stops_the_online_snapshots_until_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, _) = events_on_a_small_disk(dir.path(), true);
    let d = disk.0.as_path();
    // The state of 60,000 events takes over a megabyte.
    let filler = fill_leaving(d, 256 << 10);
    ride_out_a_full_disk(dir.path(), d, "features", &["features", "stream"], &filler);
    let snapshot = d.join("data/features/online.snapshot");
    assert!(snapshot.exists(), "the snapshot written once space was freed");
    let store = cartflow_online::MemoryStore::open(snapshot.clone(), cartflow_features::DEFAULT_SESSION_TTL).unwrap();
    assert!(!snapshot.with_extension("damaged").exists(), "the snapshot read back whole");
    let events: Vec<cartflow_core::Event> =
        read_all(&open_log(d), VALIDATED).iter().map(|r| cartflow_core::Event::from_json(&r.value).unwrap()).collect();
    let carts = conformance::assert_one_state_of(&store, &events, "snapshotted across a full disk").0;
    assert!(carts > 1_000, "{carts} carts");
}

fn post(url: &str, token: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let mut answer = agent(30).post(url).header("authorization", format!("Bearer {token}")).send_json(body).unwrap();
    let status = answer.status().as_u16();
    (status, serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap_or_default())
}

/// PostgreSQL (a server of the test's own) restarted under a running CDC
/// capture and a registry keeping its tables there: while it is away the
/// registry answers 503 TEMPORARILY_UNAVAILABLE within seconds (which its
/// client tries again) and the capture's `/health` says it waits; once it is
/// back both go on, and every row inserted before, during and after is
/// captured exactly once.
#[test]
fn postgresql_restarted_under_the_capture_and_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pg = PostgresServer::start();
    pg.query("postgres", "CREATE DATABASE shop");
    pg.query("postgres", "CREATE DATABASE registry");
    let shop = pg.url("shop");
    let seed = |events: u64, seed: u64| {
        ok(cartflow(d)
            .args(["cdc", "seed", "--postgres", &shop, "--events", &events.to_string(), "--seed", &seed.to_string()])
            .stdout(Stdio::null()));
    };
    seed(3000, 1);

    let cdc_port = free_port();
    let mut capture = cartflow(d)
        .args(["cdc", "--postgres", &shop, "--slot", "restarted"])
        .args(["--metrics-addr", &format!("127.0.0.1:{cdc_port}")])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("cdc.log")).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(cdc_port, "cdc", Duration::from_secs(60));
    let registry = {
        let port = free_port();
        let mut cmd = cartflow(d);
        cmd.args(["registry", "serve", "--addr", &format!("127.0.0.1:{port}"), "--store", &pg.url("registry")]);
        Server::start(cmd, port, "/health", Duration::from_secs(30), &d.join("registry.log"))
    };
    let token = std::fs::read_to_string(d.join("data/auth/token")).unwrap().trim().to_owned();
    let create = |name: &str| {
        post(
            &format!("{}/api/2.0/mlflow/experiments/create", registry.url),
            &token,
            &serde_json::json!({ "name": name }),
        )
    };
    assert_eq!(create("before").0, 200);
    let captured = || read_topic(d, CDC).len();
    wait_watching(d, "the snapshot captured", Duration::from_secs(120), &[], || captured() >= 3000);

    pg.stop();
    let asked = Instant::now();
    let (status, answer) = create("during");
    assert_eq!((status, answer["error_code"].as_str()), (503, Some("TEMPORARILY_UNAVAILABLE")), "{answer}");
    assert!(asked.elapsed() < Duration::from_secs(10), "the registry took {:?} to say so", asked.elapsed());
    // cartflow's own registry client (the trainer's) tries a 503 again, as MLflow's does.
    let client = cartflow_registry::Client::new(&registry.url).with_token(Some(&token));
    let patient = std::thread::spawn(move || client.experiment_id("while-away"));
    wait_watching(d, "the capture saying it waits", Duration::from_secs(60), &[], || health(cdc_port) == 503);
    // Away long enough that the client's first try is answered 503 (a statement waits 3 s).
    std::thread::sleep(Duration::from_secs(5));
    assert!(!patient.is_finished(), "the client gave up while the database was away");
    pg.start_again();
    let id = patient.join().unwrap().expect("the client rode out the restart");
    assert!(!id.is_empty());

    seed(2000, 2);
    pg.query("shop", "DELETE FROM events WHERE id % 100 = 7");
    let rows: usize = pg.query("shop", "SELECT count(*) FROM events").parse().unwrap();
    let deletes = 5000 - rows;
    wait_watching(d, "the capture going on after the restart", Duration::from_secs(120), &[], || {
        captured() >= 5000 + 2 * deletes // a delete is a change and a tombstone
    });
    assert_eq!(health(cdc_port), 200);
    let (status, answer) = create("after");
    assert_eq!(status, 200, "the registry is back: {answer}");
    let _ = Command::new("kill").arg("-INT").arg(capture.id().to_string()).status();
    let said = std::fs::read_to_string(d.join("cdc.log")).unwrap();
    assert!(capture.wait().unwrap().success(), "{said}");
    assert!(said.contains("starting the stage again"), "the capture never said it restarted: {said}");

    // Every row once: inserted (snapshot or insert) once, deleted at most once.
    let mut live: std::collections::HashMap<String, i32> = std::collections::HashMap::new();
    for r in read_topic(d, CDC) {
        let Ok(change) = serde_json::from_slice::<serde_json::Value>(&r.value) else { continue };
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        match change["op"].as_str() {
            Some("r" | "c") => *live.entry(key).or_default() += 1,
            Some("d") => *live.entry(key).or_default() -= 1,
            _ => {}
        }
    }
    let twice: Vec<_> = live.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "rows captured twice: {twice:?}");
    assert_eq!(live.len(), 5000, "every inserted row was captured");
    assert_eq!(live.values().filter(|n| **n == 1).count(), rows, "rows in the table vs rows captured");
}

/// Gold's tables in schema dwh and their rows, as PostgreSQL holds them.
fn exported(pg: &PostgresServer) -> Vec<(String, u64)> {
    cartflow_warehouse::tables::GOLD_KEYS
        .iter()
        .map(|(table, _, _)| {
            let rows = pg.query("analytics", &format!("SELECT count(*) FROM dwh.{table}"));
            (table.to_string(), rows.parse().unwrap())
        })
        .collect()
}

/// PostgreSQL restarted while `warehouse export` loads gold into it: the
/// export fails at once with a message naming the database, the tables keep
/// the last export whole (one transaction), and the next export completes.
#[test]
fn postgresql_restarted_under_the_warehouse_export() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lake_up_to_date = |events: u64, seed: u64| {
        ok(cartflow(d)
            .args(["produce", "--generate", &events.to_string(), "--seed", &seed.to_string()])
            .stdout(Stdio::null()));
        for stage in [&["validate", "--drain"][..], &["lake-sink", "--drain"], &["warehouse", "build"]] {
            ok(cartflow(d).args(stage).stdout(Stdio::null()));
        }
    };
    lake_up_to_date(30_000, 1);
    let pg = PostgresServer::start();
    pg.query("postgres", "CREATE DATABASE analytics");
    let url = pg.url("analytics");
    ok(cartflow(d).args(["warehouse", "export", "--postgres", &url]).stdout(Stdio::null()));
    let first = exported(&pg);
    assert!(first.iter().all(|(_, rows)| *rows > 0), "{first:?}");

    // More events: the next export changes every fact table.
    lake_up_to_date(20_000, 2);
    // Another session holds the first table, so the export waits inside its transaction.
    let held = cartflow_warehouse::tables::GOLD_KEYS[0].0;
    let mut holder = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "postgres", "-d", "analytics", "-c"])
        .arg(format!("BEGIN; LOCK TABLE dwh.{held} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600)"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let locked = format!("SELECT count(*) FROM pg_locks WHERE relation = 'dwh.{held}'::regclass AND granted");
    wait_watching(d, "the table held", Duration::from_secs(30), &[], || pg.query("analytics", &locked) != "0");
    let export = cartflow(d)
        .args(["warehouse", "export", "--postgres", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
    wait_watching(d, "the export waiting for the held table", Duration::from_secs(60), &[], || {
        pg.query("analytics", waiting) == "1"
    });
    pg.stop();
    let stopped = Instant::now();
    let out = export.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the export cannot have finished: {said}");
    assert!(stopped.elapsed() < Duration::from_secs(10), "the export took {:?} to fail", stopped.elapsed());
    let redacted = format!("exporting gold to postgres://postgres@127.0.0.1:{}/analytics", pg.port);
    assert!(said.contains(&redacted) && said.contains("terminat"), "the failure names the database and why: {said}");
    let _ = holder.wait();
    pg.start_again();
    assert_eq!(exported(&pg), first, "the interrupted export changed nothing");

    ok(cartflow(d).args(["warehouse", "export", "--postgres", &url]).stdout(Stdio::null()));
    let second = exported(&pg);
    let grown = |t: &str| {
        let rows = |e: &[(String, u64)]| e.iter().find(|(n, _)| n == t).unwrap().1;
        rows(&second) > rows(&first)
    };
    assert!(grown("fact_events") && grown("fact_cart_outcomes"), "{first:?} → {second:?}");
}

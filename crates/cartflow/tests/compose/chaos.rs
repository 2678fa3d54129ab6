//! The chaos run of the compose test, on the system it brought up: crashes under load, then the
//! checks that nothing was lost, doubled or left down.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cartflow_online::OnlineStore as _;

use super::common::*;
use super::{CDC, Deployed, podman};

/// Chaos on the deployed system (docs/deploy.md): a million events produced and a stream of CDC
/// inserts, updates and deletes, while a validator, the lake sink, the feature streamer, the CDC
/// capture and a serve replica are each SIGKILLed at a random moment and the broker is restarted
/// once, with `/predict` load through nginx throughout. Then: every input once downstream and in the lake,
/// the online store one state of every event, every CDC change once, the crashed services back by
/// themselves, and nearly every prediction answered. `CHAOS_EVENTS` sets the count.
pub fn run(system: &Deployed, body: &str, token: &str) {
    let events: u64 = std::env::var("CHAOS_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let project = &system.project;
    let log_file = |name: &str| std::fs::File::create(system.tmp.join(name)).unwrap();
    let script = system.tmp.join("predict.lua");
    wrk_post_script(&script, body, token);
    // Runs until interrupted (SIGINT makes wrk stop and report).
    let load = system
        .netns
        .exec(&["wrk", "-t", "1", "-c", "4", "-d", "1h", "--latency", "--timeout", "5s", "-s"])
        .arg(&script)
        .arg("https://localhost/predict")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut produce = system
        .cartflow(&["produce", "--generate", &events.to_string(), "--seed", "11", "--inject-invalid", "0.01"])
        .stdout(log_file("produce.log"))
        .stderr(log_file("produce.err"))
        .spawn()
        .unwrap();
    let shop = system.shop_url();
    let mut inserts = system
        .cartflow(&["cdc", "seed", "--postgres", &shop, "--events", "20000", "--rate", "500", "--seed", "12"])
        .stdout(log_file("inserts.log"))
        .stderr(log_file("inserts.err"))
        .spawn()
        .unwrap();

    // One of each, at random moments of the first 40 seconds, in a random order (the seed is printed).
    // CHAOS_SEED replays a run's schedule.
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    let mut state = seed;
    let mut random = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let validator = ["validate-1", "validate-2"][random(2) as usize];
    let replica = ["serve-1", "serve-2"][random(2) as usize];
    let crashed = [validator, "lake-sink", "features-stream", "cdc", replica];
    let mut faults: Vec<(u64, &str)> =
        crashed.into_iter().chain(["kafka"]).map(|service| (3 + random(37), service)).collect();
    faults.sort();
    eprintln!("chaos: seed {seed}, faults at {faults:?} s (kafka restarted, the others SIGKILLed)");
    for (at, service) in &faults {
        std::thread::sleep(Duration::from_secs(*at).saturating_sub(started.elapsed()));
        match *service {
            "kafka" => project.restart(service),
            _ => project.crash(service),
        }
    }

    // CDC updates and deletes once the inserts are in, while events still flow.
    assert!(inserts.wait().unwrap().success(), "cdc seed failed: see {}", system.tmp.join("inserts.err").display());
    let psql = |sql: &str| {
        let out = ok(&mut system.netns.exec(&["psql", &shop, "-Atc", sql]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let updated: u64 =
        psql("WITH u AS (UPDATE events SET price = price + 1 WHERE id % 10 = 1 RETURNING 1) SELECT count(*) FROM u")
            .parse()
            .unwrap();
    let deleted: u64 =
        psql("WITH d AS (DELETE FROM events WHERE id % 25 = 2 RETURNING 1) SELECT count(*) FROM d").parse().unwrap();
    let rows: u64 = psql("SELECT count(*) FROM events").parse().unwrap();
    assert!(produce.wait().unwrap().success(), "produce failed: see {}", system.tmp.join("produce.err").display());
    let produced = std::fs::read_to_string(system.tmp.join("produce.log")).unwrap().trim().to_owned();

    // The crashed services came back by themselves.
    for service in crashed {
        project.wait_healthy(service, Duration::from_secs(120));
        assert!(
            project.inspect(service, "{{.RestartCount}}").parse::<u64>().unwrap() >= 1,
            "{service} was not restarted"
        );
    }

    // Drained: every input has its output, every output is in the lake, the store has every event.
    let lake = project.volume("s3-data").join("cartflow/lake");
    let redis_url = system.secret("redis_url").replace("@redis:", "@127.0.0.1:");
    let drained = system.netns.inside(|| {
        let log = cartflow_log::KafkaLog::connect("kafka://127.0.0.1:9092", Default::default()).unwrap();
        let store =
            cartflow_online::RedisStore::open(&redis_url, "cartflow", cartflow_features::DEFAULT_SESSION_TTL).unwrap();
        let waiting = Instant::now();
        loop {
            let inputs: usize =
                [RAW, CDC].iter().map(|t| read_all(&log, t).iter().filter(|r| !r.value.is_empty()).count()).sum();
            let validated = read_all(&log, VALIDATED);
            let outputs = validated.len() + read_all(&log, INVALID).len();
            let landed = read_lake_table(&lake, "events").len() + read_lake_table(&lake, "invalid").len();
            let ends = end_offsets(&validated);
            let stored: std::collections::BTreeMap<u32, u64> =
                store.offsets().unwrap().iter().map(|o| (o.partition, o.offset)).collect();
            if inputs == outputs && outputs == landed && stored == ends {
                break;
            }
            if waiting.elapsed() >= Duration::from_secs(600) {
                return Err(format!(
                    "not drained: {inputs} inputs, {outputs} outputs, {landed} in the lake, store at {stored:?} of {ends:?}"
                ));
            }
            std::thread::sleep(Duration::from_secs(5));
        }
        let (valid, invalid) = assert_each_input_once(&log, &[RAW, CDC]);
        assert_eq!(assert_lake_exactly_once_on(&log, &lake), (valid, invalid));
        let changes = assert_cdc_changes_once(&read_all(&log, CDC));
        let validated: Vec<(cartflow_core::Event, bool)> = read_all(&log, VALIDATED)
            .iter()
            .map(|r| (cartflow_core::Event::from_json(&r.value).unwrap(), r.header_str("cartflow.op") == Some("d")))
            .collect();
        let (carts, _) =
            cartflow_testkit::conformance::assert_one_state_of_changes(&store, &validated, "after the chaos");
        Ok((valid, invalid, changes, carts))
    });
    // What the stages said is what tells why (the containers go with the test).
    let (valid, invalid, changes, carts) = drained.unwrap_or_else(|why| {
        // The load would outlive the test, holding its output open.
        Command::new("kill").args(["-KILL", &load.id().to_string()]).status().unwrap();
        let logs: Vec<String> = ["validate-1", "validate-2", "lake-sink", "features-stream", "cdc", "kafka"]
            .iter()
            .map(|service| format!("--- {service}:\n{}", project.logs(service, 40)))
            .collect();
        panic!("{why}\n{}", logs.join("\n"))
    });
    // 2,000 rows seeded before, 20,000 inserted now, then the updates and deletes (a delete's
    // tombstone is no change).
    assert_eq!(changes, 2_000 + 20_000 + updated + deleted, "CDC changes");
    assert_eq!(rows, 22_000 - deleted);

    Command::new("kill").args(["-INT", &load.id().to_string()]).status().unwrap();
    let report = WrkReport::parse(&String::from_utf8_lossy(&load.wait_with_output().unwrap().stdout));
    let success = 1.0 - report.failed as f64 / report.requests.max(1) as f64;
    let figures = format!(
        "chaos: {produced}; {} CDC changes in all, {valid} valid and {invalid} invalid, \
         each once downstream and in the lake; {carts} carts as one state of every event in Redis; \
         {} of {} predictions through nginx answered ({:.3} %), p99 {:.1} ms; drained {:.0} s after the start",
        changes,
        report.requests - report.failed,
        report.requests,
        success * 100.0,
        report.p99_ms,
        started.elapsed().as_secs_f64()
    );
    // The requests that failed, as nginx logged them (status, the replicas tried, their times).
    let failed = ok(podman().args(["exec", &project.container("nginx"), "sh", "-c"]).arg(
        "grep -v '\" 200 ' /var/log/nginx/cartflow.access.log | grep -c . ; \
         grep -v '\" 200 ' /var/log/nginx/cartflow.access.log | awk '{print $6, $9, $10}' | sort | uniq -c | sort -rn | head",
    ));
    let mut figures =
        format!("{figures}\nanswers other than 200 in nginx's log:\n{}", String::from_utf8_lossy(&failed.stdout));
    if report.failed > 0 {
        // What both replicas said: the one crashed and the one serving alone meanwhile.
        for service in ["serve-1", "serve-2"] {
            let log = ok(podman().args(["logs", "--tail", "40", &project.container(service)]));
            figures += &format!(
                "{service}'s log:\n{}{}",
                String::from_utf8_lossy(&log.stdout),
                String::from_utf8_lossy(&log.stderr)
            );
        }
    }
    // Kept beside the test's other output: a passing test's stderr is not shown.
    eprintln!("{figures}");
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("compose-chaos.txt"),
        format!("{figures}\n{}", report.text),
    )
    .unwrap();
    assert!(report.requests > 1000 && success >= 0.999, "{}", report.text);
}

/// The end of each partition of a topic, from its records.
fn end_offsets(records: &[cartflow_log::Record]) -> std::collections::BTreeMap<u32, u64> {
    let mut ends = std::collections::BTreeMap::new();
    for r in records {
        let end = ends.entry(r.partition).or_insert(0);
        *end = (*end).max(r.offset + 1);
    }
    ends
}

/// Every change of the CDC topic is there once (by its position in the source's WAL, which the
/// capture puts in `cartflow.cdc.pos`); returns how many changes (tombstones apart).
fn assert_cdc_changes_once(records: &[cartflow_log::Record]) -> u64 {
    let mut positions = std::collections::HashMap::new();
    for r in records.iter().filter(|r| !r.value.is_empty()) {
        let pos = r.header_str("cartflow.cdc.pos").expect("every change names its position").to_owned();
        *positions.entry(pos).or_insert(0u32) += 1;
    }
    let twice: Vec<_> = positions.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "changes captured twice: {twice:?}");
    positions.len() as u64
}

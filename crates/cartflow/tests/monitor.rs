//! `cartflow monitor` on the embedded log: logged predictions joined with the
//! validated events that followed them, scored per model version, equal to
//! labels worked out here from the events themselves, and exactly once
//! across SIGKILLs of the monitor.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cartflow_core::{Event, EventType};
use cartflow_log::{EventLog, ProducerRecord};
use cartflow_monitor::record::{LoggedPrediction, ModelVersion};
use common::*;
use rand::{Rng, SeedableRng};

const TTL_SECS: i64 = 1800;

/// The monitor's `total` line for a version: (labelled, bought, roc_auc).
fn total(printed: &str, version: &str) -> (u64, u64, f64) {
    let line = printed
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("m v{version} total")))
        .unwrap_or_else(|| panic!("no total line for v{version} in:\n{printed}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| words[words.iter().position(|w| *w == key).unwrap() + 1];
    (after("labelled").parse().unwrap(), after("bought").parse().unwrap(), after("roc_auc").parse().unwrap())
}

#[test]
fn the_monitor_scores_each_version_against_what_shoppers_did_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(cartflow(d).args(["produce", "--generate", "150000", "--seed", "31"]));
    ok(cartflow(d).args(["validate", "--drain"]));
    let log = open_log(d);
    let events: Vec<Event> = read_all(&log, VALIDATED).iter().map(|r| Event::from_json(&r.value).unwrap()).collect();

    // Each session's events in time order.
    let mut sessions: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in &events {
        if let Some(s) = e.user_session.as_deref() {
            sessions.entry(s).or_default().push(e);
        }
    }
    for s in sessions.values_mut() {
        s.sort_by_key(|e| e.event_time);
    }
    let watermark = events.iter().map(|e| e.event_time).max().unwrap();
    let ttl = TTL_SECS * 1_000_000;
    // The label by its definition: bought when the product's purchase comes before the session
    // ends (no event for the TTL), not bought when it ends first, none yet otherwise.
    let label = |cart: &Event, session: &[&Event]| -> Option<bool> {
        let mut last = cart.event_time;
        for e in session.iter().filter(|e| e.event_time >= cart.event_time) {
            if e.event_time > last + ttl {
                return Some(false);
            }
            if e.event_type == EventType::Purchase && e.product_id == cart.product_id {
                return Some(true);
            }
            last = e.event_time;
        }
        (last + ttl < watermark).then_some(false)
    };

    // A prediction at every cart: version 1 knows something (bought carts score higher on
    // average), version 2 is noise; each session's carts go to one version.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut producer = log.producer().unwrap();
    log.ensure_topic("tracking.predictions", 0).unwrap();
    let mut expected: HashMap<&str, Vec<(f64, bool)>> = HashMap::new();
    let mut carts = 0;
    for e in events.iter().filter(|e| e.event_type == EventType::Cart) {
        let Some(s) = e.user_session.as_deref() else { continue };
        carts += 1;
        let labelled = label(e, &sessions[s]);
        let bought = labelled == Some(true);
        let version = if s.bytes().map(u32::from).sum::<u32>() % 2 == 0 { "1" } else { "2" };
        let noise: f64 = rng.random();
        let probability = if version == "1" { 0.6 * noise + if bought { 0.4 } else { 0.0 } } else { noise };
        if labelled.is_some() {
            expected.entry(version).or_default().push((probability, bought));
        }
        let p = LoggedPrediction {
            request_id: format!("r{carts}"),
            time: e.event_time,
            model: ModelVersion { name: "m".into(), version: version.into(), alias: "champion".into() },
            user_id: e.user_id,
            product_id: e.product_id,
            user_session: Some(s.to_owned()),
            event_time: e.event_time,
            inputs: Default::default(),
            probability,
            will_purchase: probability >= 0.5,
        };
        let value = serde_json::to_vec(&p).unwrap();
        producer.send(ProducerRecord::new("tracking.predictions", Some(s.as_bytes()), &value)).unwrap();
    }
    producer.flush().unwrap();
    drop(producer);
    drop(log);
    assert!(carts > 1000, "only {carts} carts");

    // Killed at random moments, then drained.
    let monitor = |drain: bool| {
        let mut c = cartflow(d);
        c.env("CARTFLOW_FEATURES__SESSION_TTL_SECS", TTL_SECS.to_string()).args([
            "monitor",
            "--snapshot-every",
            "20ms",
        ]);
        if drain {
            c.arg("--drain");
        }
        c
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::random());
    let mut kills = 0;
    for _ in 0..4 {
        let mut child = monitor(false).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let started = Instant::now();
        let wait = Duration::from_millis(rng.random_range(100..400));
        while started.elapsed() < wait && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    let printed = stdout(&ok(&mut monitor(true)));
    eprintln!("{printed}");
    assert!(kills == 4);
    for version in ["1", "2"] {
        let want = &expected[version];
        let (labelled, bought, auc) = total(&printed, version);
        let positives = want.iter().filter(|x| x.1).count() as u64;
        assert_eq!((labelled, bought), (want.len() as u64, positives), "v{version}: labelled and bought");
        let (p, y): (Vec<f64>, Vec<f64>) = want.iter().map(|&(p, bought)| (p, f64::from(u8::from(bought)))).unzip();
        let exact = cartflow_train::metrics::roc_auc(&p, &y);
        assert!((auc - exact).abs() < 2e-3, "v{version}: roc_auc {auc} against {exact}");
    }
    let (_, _, informed) = total(&printed, "1");
    let (_, _, noise) = total(&printed, "2");
    assert!(informed > 0.7 && (noise - 0.5).abs() < 0.1, "v1 {informed}, v2 {noise}");
}

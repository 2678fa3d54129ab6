//! Nothing lost, nothing duplicated: a million events with 10 % damaged, and
//! a validator killed with SIGKILL at random moments.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};

#[test]
fn a_million_events_with_injected_invalid_land_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    ok(cartflow(dir.path()).args(["produce", "--generate", "1000000", "--inject-invalid", "0.1", "--seed", "11"]));
    let out = ok(cartflow(dir.path()).args(["validate", "--drain"]));
    let (valid, invalid) = assert_exactly_once(dir.path());
    assert_eq!(valid + invalid, 1_000_000);
    let share = invalid as f64 / 1e6;
    assert!((0.095..0.105).contains(&share), "about 10% invalid, got {share}");
    let text = stdout(&out);
    assert!(text.contains("1,000,000 records"), "{text}");
    // Every record in the invalid topic says why.
    for r in read_topic(dir.path(), INVALID).iter().step_by(997) {
        assert!(r.header_str("cartflow.error.reason").is_some_and(|s| !s.is_empty()));
        assert!(r.header_str("cartflow.error.message").is_some());
    }
}

#[test]
fn killing_the_validator_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    ok(cartflow(dir.path()).args(["produce", "--generate", "600000", "--inject-invalid", "0.05", "--seed", "5"]));
    let seed: u64 = std::env::var("KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("kill schedule seed {seed} (set KILL_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills = 0;
    for _ in 0..6 {
        let mut child = cartflow(dir.path())
            .args(["validate", "--drain"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let wait = Duration::from_millis(rng.random_range(150..900));
        let started = Instant::now();
        while started.elapsed() < wait {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 2, "the validator should have been killed mid-run at least twice, was {kills} times");
    let out = ok(cartflow(dir.path()).args(["validate", "--drain"]));
    eprintln!("{}", stdout(&out));
    let (valid, invalid) = assert_exactly_once(dir.path());
    assert_eq!(valid + invalid, 600_000);
}

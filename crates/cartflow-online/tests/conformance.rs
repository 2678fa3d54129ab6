//! The `OnlineStore` conformance suite on both backends, over generated events.

use cartflow_core::CommittedOffset;
use cartflow_core::Event;
use cartflow_features::DEFAULT_SESSION_TTL;
use cartflow_online::{Change, MemoryStore, OnlineReader, OnlineStore, RedisStore};
use cartflow_sources::{Generator, GeneratorConfig};
use cartflow_testkit::RedisPrefix;
use cartflow_testkit::conformance::online_store_suite;

fn events() -> Vec<Event> {
    let mut events: Vec<Event> =
        Generator::new(GeneratorConfig { events: 3_000, seed: 5, ..Default::default() }).collect();
    events.sort_by_key(|e| e.event_time);
    events
}

#[test]
fn the_memory_store_conforms() {
    online_store_suite(&MemoryStore::new(DEFAULT_SESSION_TTL), DEFAULT_SESSION_TTL, &events());
}

#[test]
fn the_memory_store_with_snapshots_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::open(dir.path().join("online.snapshot"), DEFAULT_SESSION_TTL).unwrap();
    online_store_suite(&store, DEFAULT_SESSION_TTL, &events());
}

/// A snapshot written while the store goes on applying holds the state, and
/// the offsets, of the moment it was taken.
#[test]
fn a_snapshot_written_in_the_background_is_of_the_moment_it_was_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("online.snapshot");
    let events = events();
    let at = |offset: u64| CommittedOffset {
        topic: "tracking.user_behavior.validated".into(),
        partition: 0,
        offset,
        metadata: String::new(),
    };
    let changes = |range: std::ops::Range<usize>| -> Vec<Change> {
        range.map(|i| Change { event: events[i].clone(), delete: false, partition: 0, offset: i as u64 }).collect()
    };
    let store = MemoryStore::open(path.clone(), DEFAULT_SESSION_TTL).unwrap();
    store.apply(&changes(0..1_500), &[at(1_500)]).unwrap();
    let taken = store.counts().unwrap();
    store.checkpoint_in_background().unwrap();
    store.apply(&changes(1_500..events.len()), &[at(events.len() as u64)]).unwrap();
    assert_ne!(store.counts().unwrap(), taken);
    drop(store);

    let reopened = MemoryStore::open(path, DEFAULT_SESSION_TTL).unwrap();
    assert_eq!(reopened.offsets().unwrap(), vec![at(1_500)]);
    assert_eq!(reopened.counts().unwrap(), taken);
}

/// A byte of the snapshot damaged on disk: the checksum catches it, the
/// file is kept aside, and the store starts empty with no offsets, so the
/// streamer reads the validated topic again from its start.
#[test]
fn a_damaged_snapshot_is_set_aside_and_the_store_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("online.snapshot");
    let events = events();
    let changes: Vec<Change> = events
        .iter()
        .enumerate()
        .map(|(i, e)| Change { event: e.clone(), delete: false, partition: 0, offset: i as u64 })
        .collect();
    let at = CommittedOffset {
        topic: "tracking.user_behavior.validated".into(),
        partition: 0,
        offset: events.len() as u64,
        metadata: String::new(),
    };
    let store = MemoryStore::open(path.clone(), DEFAULT_SESSION_TTL).unwrap();
    store.apply(&changes, std::slice::from_ref(&at)).unwrap();
    store.checkpoint().unwrap();
    let whole = store.counts().unwrap();
    drop(store);

    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04; // one bit: postcard alone would read on, into wrong counts
    std::fs::write(&path, &bytes).unwrap();
    let reopened = MemoryStore::open(path.clone(), DEFAULT_SESSION_TTL).unwrap();
    assert_eq!(reopened.offsets().unwrap(), vec![], "no offsets: the streamer starts from the topic's start");
    assert_eq!(reopened.counts().unwrap(), cartflow_online::EntityCounts::default());
    assert_eq!(std::fs::read(path.with_extension("damaged")).unwrap(), bytes, "the damaged file is kept");

    // Rebuilt from the same events, it holds what it held.
    reopened.apply(&changes, &[at]).unwrap();
    assert_eq!(reopened.counts().unwrap(), whole);
}

#[test]
fn redis_conforms_and_keeps_to_its_prefix() {
    let keys = RedisPrefix::new("conformance");
    let store = RedisStore::open(&keys.url, &keys.prefix, DEFAULT_SESSION_TTL).unwrap();
    online_store_suite(&store, DEFAULT_SESSION_TTL, &events());
    // The suite ends with the store deleted: written again, its keys are under the prefix.
    let change = cartflow_online::Change { event: events()[0].clone(), delete: false, partition: 0, offset: 0 };
    cartflow_online::OnlineStore::apply(&store, &[change], &[]).unwrap();
    assert!(!keys.keys().is_empty(), "{} wrote nothing under {}", store.describe(), keys.prefix);
}

#[test]
fn a_redis_cluster_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cartflow_testkit::needs!(cartflow_testkit::RedisCluster::start(dir.path()));
    let store = RedisStore::open(&cluster.url(), "conformance", DEFAULT_SESSION_TTL).unwrap();
    online_store_suite(&store, DEFAULT_SESSION_TTL, &events());
    assert!(store.describe().starts_with("redis+cluster://127.0.0.1:"), "{}", store.describe());
}

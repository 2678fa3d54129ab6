//! The `OnlineStore` conformance suite on both backends, over generated events.

use cartflow_core::Event;
use cartflow_features::DEFAULT_SESSION_TTL;
use cartflow_online::{MemoryStore, OnlineReader, RedisStore};
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

//! What every `OnlineStore` must do: start empty, apply batches with the
//! input position they reflect, answer every cart as the pure feature
//! definitions do over the same events, count a replayed event once, say a
//! delete of an unknown event is one, be replaced as a whole, and be deleted.

use cartflow_core::{CommittedOffset, Event, EventType};
use cartflow_features::{CartQuery, Entities};
use cartflow_online::{Change, OnlineReader, OnlineStore};

/// Runs the suite on an empty `store` whose sessions last `session_ttl`,
/// with `events` (in event-time order; a few thousand generated ones do).
pub fn online_store_suite(store: &dyn OnlineStore, session_ttl: cartflow_core::time::Micros, events: &[Event]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(events.iter().any(|e| e.event_type == EventType::Cart), "the suite needs carts among the events");

    // Empty.
    assert_eq!(store.counts().unwrap(), Default::default(), "a new store holds entities");
    assert!(store.offsets().unwrap().is_empty(), "a new store reflects an input position");
    assert_eq!(rt.block_on(store.watermark()).unwrap(), None, "a new store has a watermark");
    let first = &events[0];
    let unknown = rt.block_on(store.features(&query(first))).unwrap();
    assert!(unknown.session_time.is_none() && !unknown.user_found, "an empty store found entities: {unknown:?}");

    // Batches with their input position, beside the pure definitions.
    let mut reference = Entities::new(session_ttl);
    let mut position = Vec::new();
    for (i, batch) in events.chunks(250).enumerate() {
        let changes: Vec<Change> =
            batch.iter().enumerate().map(|(j, e)| change(e, false, (i * 250 + j) as u64)).collect();
        position = vec![offset(0, (i as u64 + 1) * 250), offset(1, i as u64)];
        let stats = store.apply(&changes, &position).unwrap();
        let counted = batch.iter().filter(|e| reference.apply(e, false) == cartflow_features::Applied::Counted).count();
        assert_eq!(stats.counted, counted as u64, "batch {i}: events counted");
        for cart in batch.iter().filter(|e| e.event_type == EventType::Cart) {
            let q = query(cart);
            let answer = rt.block_on(store.features(&q)).unwrap();
            assert_eq!(answer.features, reference.features(&q), "features of the cart {cart:?}");
            assert!(answer.user_found, "the cart's user {}", cart.user_id);
        }
    }
    let mut offsets = store.offsets().unwrap();
    offsets.sort_by_key(|o| o.partition);
    assert_eq!(offsets, position, "the input position of the last batch");
    let newest = events.iter().map(|e| e.event_time).max();
    assert_eq!(rt.block_on(store.watermark()).unwrap(), newest, "the watermark is the newest event time");
    let counts = store.counts().unwrap();
    assert_eq!(
        (counts.sessions as usize, counts.users as usize, counts.products as usize),
        (reference.sessions.len(), reference.users.len(), reference.products.len()),
        "entities held"
    );
    store.checkpoint().unwrap();

    // A replay (a crash between apply and commit) changes nothing.
    let replay: Vec<Change> = events[..100].iter().enumerate().map(|(j, e)| change(e, false, j as u64)).collect();
    let stats = store.apply(&replay, &position).unwrap();
    assert_eq!((stats.counted, stats.duplicates), (0, 100), "a replayed batch");
    let q = query(events.iter().rev().find(|e| e.event_type == EventType::Cart).unwrap());
    assert_eq!(rt.block_on(store.features(&q)).unwrap().features, reference.features(&q), "features after a replay");

    // A delete of an event never applied is said to be one.
    let mut never = first.clone();
    never.product_id = i64::MAX - 7;
    let stats = store.apply(&[change(&never, true, events.len() as u64)], &position).unwrap();
    assert_eq!(stats.unknown_deletes, 1, "a delete of an event never applied");

    // Replaced as a whole (`features materialize`).
    let counts = store.replace(vec![Entities::new(session_ttl)], &[offset(0, 1)]).unwrap();
    assert_eq!(counts, Default::default(), "replace with nothing");
    assert_eq!(store.counts().unwrap(), Default::default(), "counts after replace");
    assert_eq!(store.offsets().unwrap(), vec![offset(0, 1)], "offsets after replace");
    let gone = rt.block_on(store.features(&q)).unwrap();
    assert!(!gone.user_found, "a user after replace with nothing");

    // Deleted: nothing left, not even the input position.
    store.apply(&[change(first, false, 0)], &[offset(0, 1)]).unwrap();
    store.delete().unwrap();
    assert_eq!(store.counts().unwrap(), Default::default(), "counts after delete");
    assert!(store.offsets().unwrap().is_empty(), "offsets after delete");
}

/// Asks `store` for every cart of `events` and compares each answer with one
/// state of all the events — what a store written by several writers, or
/// after crashes, must equal — and the users and products it holds. Returns
/// the carts asked and the reference state.
pub fn assert_one_state_of(store: &dyn OnlineReader, events: &[Event], what: &str) -> (usize, Entities) {
    let changes: Vec<(Event, bool)> = events.iter().map(|e| (e.clone(), false)).collect();
    assert_one_state_of_changes(store, &changes, what)
}

/// As [`assert_one_state_of`], for changes: an event with `true` is a CDC
/// delete, which takes its event back.
pub fn assert_one_state_of_changes(
    store: &dyn OnlineReader,
    changes: &[(Event, bool)],
    what: &str,
) -> (usize, Entities) {
    let mut reference = Entities::new(cartflow_features::DEFAULT_SESSION_TTL);
    for (e, delete) in changes {
        reference.apply(e, *delete);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut carts = 0;
    for cart in changes.iter().map(|(e, _)| e).filter(|e| e.event_type == EventType::Cart) {
        let q = CartQuery::of(cart, None);
        let online = rt.block_on(store.features(&q)).unwrap().features;
        assert_eq!(online, reference.features(&q), "{what}: the cart {cart:?}");
        carts += 1;
    }
    let counts = store.counts().unwrap();
    assert_eq!(counts.users as usize, reference.users.len(), "{what}: users");
    assert_eq!(counts.products as usize, reference.products.len(), "{what}: products");
    (carts, reference)
}

/// An event of the input's partition 0, at `offset`.
fn change(e: &Event, delete: bool, offset: u64) -> Change {
    Change { event: e.clone(), delete, partition: 0, offset }
}

fn query(e: &Event) -> CartQuery<'_> {
    CartQuery::of(e, None)
}

fn offset(partition: u32, offset: u64) -> CommittedOffset {
    CommittedOffset { topic: "tracking.user_behavior.validated".into(), partition, offset, metadata: String::new() }
}

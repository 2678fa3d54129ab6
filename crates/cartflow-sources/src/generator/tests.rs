use std::collections::{HashMap, HashSet};

use super::*;
use cartflow_core::EventType;

fn events(seed: u64, n: u64, profile: Profile) -> Vec<Event> {
    Generator::new(GeneratorConfig { seed, events: n, profile, ..GeneratorConfig::default() }).collect()
}

/// Figures a person compares with the real dataset's.
#[derive(Debug)]
struct Shape {
    share: HashMap<EventType, f64>,
    no_category: f64,
    no_brand: f64,
    events_per_session: f64,
    repeated_carts: usize,
    /// Share of (session, product) first carts followed by a purchase in the session.
    bought_after_cart: f64,
    /// The same, split by whether the product was viewed more than once before the cart.
    bought_after_one_view: f64,
    bought_after_more_views: f64,
}

fn shape(ev: &[Event]) -> Shape {
    let n = ev.len() as f64;
    let mut share = HashMap::new();
    for e in ev {
        *share.entry(e.event_type).or_insert(0.0) += 1.0 / n;
    }
    let sessions: HashSet<_> = ev.iter().filter_map(|e| e.user_session.as_deref()).collect();
    let mut seen = HashSet::new();
    let repeated_carts = ev.iter().filter(|e| e.event_type == EventType::Cart && !seen.insert(e.to_json())).count();
    let mut views: HashMap<(&str, i64), u32> = HashMap::new();
    let mut first_carts: HashMap<(&str, i64), u32> = HashMap::new();
    let mut bought = HashSet::new();
    for e in ev {
        let Some(s) = e.user_session.as_deref() else {
            continue;
        };
        let k = (s, e.product_id);
        match e.event_type {
            EventType::View => *views.entry(k).or_insert(0) += 1,
            EventType::Cart => {
                let v = views.get(&k).copied().unwrap_or(0);
                first_carts.entry(k).or_insert(v);
            }
            EventType::Purchase if first_carts.contains_key(&k) => {
                bought.insert(k);
            }
            _ => {}
        }
    }
    let rate = |filter: &dyn Fn(u32) -> bool| {
        let keys: Vec<_> = first_carts.iter().filter(|(_, v)| filter(**v)).map(|(k, _)| k).collect();
        keys.iter().filter(|k| bought.contains(**k)).count() as f64 / keys.len().max(1) as f64
    };
    Shape {
        share,
        no_category: ev.iter().filter(|e| e.category_code.is_none()).count() as f64 / n,
        no_brand: ev.iter().filter(|e| e.brand.is_none()).count() as f64 / n,
        events_per_session: n / sessions.len() as f64,
        repeated_carts,
        bought_after_cart: rate(&|_| true),
        bought_after_one_view: rate(&|v| v <= 1),
        bought_after_more_views: rate(&|v| v > 1),
    }
}

#[test]
fn same_seed_same_events_and_time_ordered() {
    let a = events(7, 20_000, Profile::Electronics);
    assert_eq!(a, events(7, 20_000, Profile::Electronics));
    assert_ne!(a, events(8, 20_000, Profile::Electronics));
    assert_eq!(a.len(), 20_000);
    assert!(a.windows(2).all(|w| w[0].event_time <= w[1].event_time));
    assert!(a.iter().all(|e| e.event_time % 1_000_000 == 0 && e.price > 0.0));
}

#[test]
fn shaped_like_the_multi_category_store() {
    let s = shape(&events(1, 400_000, Profile::Electronics));
    eprintln!("{s:#?}");
    let share = |t| s.share.get(&t).copied().unwrap_or(0.0);
    assert!((0.92..0.96).contains(&share(EventType::View)), "{s:?}");
    assert!((0.030..0.045).contains(&share(EventType::Cart)), "{s:?}");
    assert!((0.018..0.030).contains(&share(EventType::Purchase)), "{s:?}");
    assert_eq!(share(EventType::RemoveFromCart), 0.0);
    assert!((0.26..0.40).contains(&s.no_category), "{s:?}");
    assert!((0.10..0.18).contains(&s.no_brand), "{s:?}");
    assert!((3.0..7.0).contains(&s.events_per_session), "{s:?}");
    assert!(s.repeated_carts > 0);
    assert!((0.25..0.60).contains(&s.bought_after_cart), "{s:?}");
    assert!(s.bought_after_more_views > s.bought_after_one_view + 0.05, "views before the cart carry signal: {s:?}");
}

#[test]
fn the_cosmetics_profile_removes_from_carts() {
    let s = shape(&events(3, 100_000, Profile::Cosmetics));
    eprintln!("{s:#?}");
    assert!(s.share.get(&EventType::RemoveFromCart).copied().unwrap_or(0.0) > 0.05, "{s:?}");
    assert!(s.share[&EventType::Cart] > 0.15, "{s:?}");
}

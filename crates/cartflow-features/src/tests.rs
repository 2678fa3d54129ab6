//! The definitions against hand-worked sessions: point in time, duplicates,
//! visits, deletes, labels, and the cart answered the same whether or not the
//! state already holds it.

use cartflow_core::time::Micros;
use cartflow_core::{Event, EventType};

use crate::*;

const S: Micros = 1_000_000;
/// 2019-10-01 00:00:00 UTC, a Tuesday.
const T0: Micros = 1_569_888_000 * S;

fn ev(secs: i64, kind: EventType, product: i64, user: i64, session: Option<&str>) -> Event {
    Event {
        event_time: T0 + secs * S,
        event_type: kind,
        product_id: product,
        category_id: 7,
        category_code: Some("electronics.smartphone.case".into()),
        brand: Some("acme".into()),
        price: 10.0 + product as f64,
        user_id: user,
        user_session: session.map(str::to_owned),
    }
}

fn query<'a>(e: &'a Event, attrs: Option<&'a CartAttrs>) -> CartQuery<'a> {
    CartQuery::of(e, attrs)
}

use EventType::{Cart, Purchase, RemoveFromCart, View};

#[test]
fn a_cart_sees_its_session_so_far_and_nothing_after() {
    let mut x = Entities::new(DEFAULT_SESSION_TTL);
    let cart = ev(60, Cart, 2, 1, Some("a"));
    for e in [ev(0, View, 1, 1, Some("a")), ev(30, View, 2, 1, Some("a")), ev(30, View, 2, 1, Some("a"))] {
        x.apply(&e, false);
    }
    let before = x.features(&query(&cart, None));
    x.apply(&cart, false);
    // Later events must not change the answer for the cart's time.
    for e in [ev(61, View, 3, 1, Some("a")), ev(90, Purchase, 2, 1, Some("a"))] {
        x.apply(&e, false);
    }
    let after = x.features(&query(&cart, None));
    assert_eq!(before, after);
    let f = after;
    assert_eq!(f.activity_count, 3, "two views (one duplicate) and the cart");
    assert_eq!((f.session_views, f.session_carts, f.session_removals), (2, 1, 0));
    assert_eq!(f.session_distinct_products, 2);
    assert_eq!(f.product_views_in_session, 1);
    assert_eq!(f.session_duration_seconds, 60.0);
    assert_eq!(f.event_weekday, 1, "Tuesday");
    assert_eq!(f.event_hour, 0);
    assert_eq!(f.price, Some(12.0));
    assert_eq!(f.category_code_level1.as_deref(), Some("electronics"));
    assert_eq!(f.category_code_level2.as_deref(), Some("smartphone"));
}

#[test]
fn user_and_product_history_is_strictly_before_the_cart() {
    let mut x = Entities::new(DEFAULT_SESSION_TTL);
    for e in [
        ev(0, Cart, 5, 1, Some("old")),
        ev(10, Purchase, 5, 1, Some("old")),
        ev(20, Cart, 5, 2, Some("other")),
        // Same second as the cart below: not "before" it.
        ev(100, Cart, 5, 3, Some("x")),
        ev(100, View, 9, 1, Some("new")),
    ] {
        x.apply(&e, false);
    }
    let cart = ev(100, Cart, 5, 1, Some("new"));
    x.apply(&cart, false);
    let f = x.features(&query(&cart, None));
    assert_eq!((f.user_prior_sessions, f.user_prior_carts, f.user_prior_purchases), (1, 1, 1));
    assert_eq!((f.product_prior_carts, f.product_prior_purchases), (2, 1));
    assert_eq!(f.product_conversion_rate, 2.0 / 4.0);
}

#[test]
fn a_session_idle_past_its_ttl_starts_a_new_visit() {
    let ttl = 3_600 * S;
    let mut x = Entities::new(ttl);
    x.apply(&ev(0, View, 1, 1, Some("a")), false);
    let cart = ev(2 * 3_600, Cart, 1, 1, Some("a"));
    let f = x.features(&query(&cart, None));
    assert_eq!((f.activity_count, f.session_views, f.user_prior_sessions), (1, 0, 1));
    x.apply(&cart, false);
    assert_eq!(x.features(&query(&cart, None)), f);
    assert_eq!(x.users[&1].counts.totals()[state::USER_SESSIONS], 2);
}

#[test]
fn a_cdc_delete_takes_an_event_back_everywhere() {
    let mut x = Entities::new(DEFAULT_SESSION_TTL);
    let cart = ev(50, Cart, 4, 1, Some("a"));
    let first = ev(10, Cart, 3, 1, Some("a"));
    x.apply(&ev(5, View, 4, 1, Some("a")), false);
    let without = x.features(&query(&cart, None));
    x.apply(&first, false);
    assert_ne!(x.features(&query(&cart, None)), without);
    assert_eq!(x.apply(&first, true), Applied::Counted);
    assert_eq!(x.apply(&first, true), Applied::Unknown);
    assert_eq!(x.features(&query(&cart, None)), without);
}

#[test]
fn duplicates_without_a_session_count_once_for_the_user() {
    let mut x = Entities::new(DEFAULT_SESSION_TTL);
    let e = ev(0, Cart, 1, 1, None);
    assert_eq!(x.apply(&e, false), Applied::Counted);
    assert_eq!(x.apply(&e, false), Applied::Duplicate);
    let later = ev(10, Cart, 2, 1, Some("s"));
    assert_eq!(x.features(&query(&later, None)).user_prior_carts, 1);
}

#[test]
fn given_attributes_win_and_missing_ones_come_from_the_product() {
    let mut x = Entities::new(DEFAULT_SESSION_TTL);
    x.apply(&ev(0, View, 1, 1, Some("a")), false);
    let cart = ev(5, Cart, 1, 1, Some("a"));
    let partial = CartAttrs { price: Some(99.0), ..Default::default() };
    let f = x.features(&query(&cart, Some(&partial)));
    assert_eq!((f.price, f.brand.as_deref()), (Some(99.0), Some("acme")));
    let mut own = cart.clone();
    own.brand = None;
    let f = x.features(&query(&cart, Some(&CartAttrs::of_event(&own))));
    assert_eq!(f.brand, None, "the event's own empty brand is not filled in");
}

#[test]
fn the_training_set_labels_first_carts_by_what_the_session_bought_later() {
    let mut b = TrainingSetBuilder::new(DEFAULT_SESSION_TTL);
    let events = [
        ev(0, View, 1, 1, Some("a")),
        ev(10, Cart, 1, 1, Some("a")),
        ev(20, RemoveFromCart, 1, 1, Some("a")),
        ev(30, Cart, 1, 1, Some("a")),
        ev(30, Cart, 2, 1, Some("a")),
        ev(40, Purchase, 2, 1, Some("a")),
        ev(50, Cart, 3, 1, None),
        // Bought in another session: not this row's label.
        ev(60, Cart, 1, 2, Some("b")),
        ev(70, Purchase, 1, 2, Some("c")),
    ];
    let mut x = Entities::new(DEFAULT_SESSION_TTL);
    let mut online = Vec::new();
    for e in events.iter().cloned() {
        x.apply(&e, false);
        if e.event_type == Cart && e.user_session.is_some() {
            online.push(x.features(&query(&e, Some(&CartAttrs::of_event(&e)))));
        }
        b.push(e);
    }
    let (rows, _) = b.finish();
    let got: Vec<_> = rows.iter().map(|r| (r.user_session.as_str(), r.product_id, r.is_purchased)).collect();
    assert_eq!(got, [("a", 1, false), ("a", 2, true), ("b", 1, false)]);
    // Online answers for the same carts (the repeat cart of product 1 has no row).
    assert_eq!(rows[0].features, online[0]);
    assert_eq!(rows[2].features, online[3]);
    // Ties: the cart of product 2 at 30 s sees the other cart of that second.
    assert_eq!(rows[1].features.session_carts, 3);
    assert_eq!(rows[1].features, online[2]);
}

/// What lets feature streamers split the work by input partition: each
/// partition's events applied to a state of their own, then merged, answer
/// every cart as one state of all the events does.
#[test]
fn merging_partitions_states_answers_as_one_state_of_all_events() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let kinds = [View, View, View, Cart, Cart, Purchase, RemoveFromCart];
    let mut events = Vec::new();
    for i in 0..4000 {
        let user = next(40) as i64;
        let session = (next(5) > 0).then(|| format!("s{user}-{}", next(3)));
        let mut e = ev(i + next(5) as i64, kinds[next(7) as usize], next(25) as i64, user, session.as_deref());
        if next(10) == 0 {
            // Out of order, within and past the recent horizon.
            e.event_time -= next(1_200) as i64 * S;
        }
        events.push(e);
        if next(20) == 0 {
            events.push(events[events.len() - 1].clone()); // an exact duplicate
        }
    }
    let partition = |e: &Event| e.partition_key().bytes().map(u64::from).sum::<u64>() % 4;
    let mut whole = Entities::new(DEFAULT_SESSION_TTL);
    let mut parts: Vec<Entities> = (0..4).map(|_| Entities::new(DEFAULT_SESSION_TTL)).collect();
    for (i, e) in events.iter().enumerate() {
        // Some deletes of events counted before, as CDC sends them.
        let delete = i % 97 == 0 && i > 0;
        let e = if delete { &events[i - 1] } else { e };
        assert_eq!(whole.apply(e, delete), parts[partition(e) as usize].apply(e, delete), "event {i}");
    }
    let mut merged = Entities::new(DEFAULT_SESSION_TTL);
    for p in parts {
        merged.merge(p);
    }
    assert_eq!(merged.sessions, whole.sessions);
    assert_eq!(merged.watermark, whole.watermark);
    assert_eq!(merged.products, whole.products);
    for (id, user) in &whole.users {
        assert_eq!(merged.users[id].counts, user.counts, "user {id}");
    }
    let recent = whole.watermark - state::RECENT_HORIZON;
    let carts = events.iter().filter(|e| e.event_type == Cart && e.event_time >= recent);
    let mut asked = 0;
    for cart in carts {
        let q = query(cart, None);
        assert_eq!(merged.features(&q), whole.features(&q), "the cart {cart:?}");
        asked += 1;
    }
    assert!(asked > 50, "only {asked} carts asked");
}

//! The features of one cart event, computed from entity state as of the
//! cart's time. The only place a feature's value is worked out: the batch
//! replay, the feature API and the prediction server all call [`compute`].

use cartflow_core::EventType;
use cartflow_core::time::{self, Micros};
use serde::{Deserialize, Serialize};

use crate::state::{CARTS, PURCHASES, ProductState, SessionState, USER_SESSIONS, UserState};

/// The cart's own attributes, as far as the caller knows them (the batch
/// replay knows all; a prediction request may carry some).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CartAttrs {
    pub price: Option<f64>,
    pub brand: Option<String>,
    pub category_code: Option<String>,
    /// All three are the cart's own: a missing brand is empty, not unknown.
    #[serde(skip)]
    pub complete: bool,
}

impl CartAttrs {
    pub fn of_event(e: &cartflow_core::Event) -> Self {
        CartAttrs {
            price: Some(e.price),
            brand: e.brand.clone(),
            category_code: e.category_code.clone(),
            complete: true,
        }
    }
}

/// A cart event to compute features for.
#[derive(Debug, Clone, PartialEq)]
pub struct CartQuery<'a> {
    pub time: Micros,
    pub user_id: i64,
    pub product_id: i64,
    pub user_session: Option<&'a str>,
    /// Given attributes win; missing ones come from the product's latest event.
    pub attrs: Option<&'a CartAttrs>,
}

impl<'a> CartQuery<'a> {
    /// The question a cart event asks, at its own time, with `attrs` if the request gives them.
    pub fn of(e: &'a cartflow_core::Event, attrs: Option<&'a CartAttrs>) -> Self {
        CartQuery {
            time: e.event_time,
            user_id: e.user_id,
            product_id: e.product_id,
            user_session: e.user_session.as_deref(),
            attrs,
        }
    }
}

/// Every feature of [`crate::FEATURES`] for one cart event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartFeatures {
    pub price: Option<f64>,
    pub brand: Option<String>,
    pub category_code_level1: Option<String>,
    pub category_code_level2: Option<String>,
    pub event_weekday: i64,
    pub activity_count: i64,
    pub event_hour: i64,
    pub session_views: i64,
    pub session_carts: i64,
    pub session_removals: i64,
    pub session_distinct_products: i64,
    pub session_duration_seconds: f64,
    pub product_views_in_session: i64,
    pub user_prior_sessions: i64,
    pub user_prior_carts: i64,
    pub user_prior_purchases: i64,
    pub product_prior_carts: i64,
    pub product_prior_purchases: i64,
    pub product_conversion_rate: f64,
}

/// The entity state a cart's features read; `None` for an entity not seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntityView<'a> {
    pub session: Option<&'a SessionState>,
    pub user: Option<&'a UserState>,
    pub product: Option<&'a ProductState>,
}

/// Computes the features of `q` as of `q.time`: the session's events at or
/// before it (the cart counted once, whether or not it is already in the
/// state), user and product counts strictly before it.
pub fn compute(q: &CartQuery<'_>, state: EntityView<'_>, session_ttl: Micros) -> CartFeatures {
    let t = q.time;
    // The session's events so far, unless its visit ended before the cart.
    let so_far: &[_] = match state.session {
        Some(s) if q.user_session.is_some() && !s.expired_at(t, session_ttl) => {
            &s.events[..s.events.partition_point(|e| e.time <= t)]
        }
        _ => &[],
    };
    let has_session = q.user_session.is_some();
    let cart_seen = so_far.iter().any(|e| e.kind == EventType::Cart && e.product_id == q.product_id && e.time == t);
    // The cart itself, when the state does not hold it yet.
    let own = i64::from(has_session && !cart_seen);
    let count = |kind: EventType| so_far.iter().filter(|e| e.kind == kind).count() as i64;

    let mut products: Vec<i64> = so_far.iter().map(|e| e.product_id).collect();
    if has_session {
        products.push(q.product_id);
    }
    products.sort_unstable();
    products.dedup();

    let session_start = so_far.first().map(|e| e.time);
    let user = state.user.map_or([0; 3], |u| u.counts.before(t));
    // This session's own start is not a prior session.
    let own_start = i64::from(session_start.is_some_and(|s| s < t));
    let product = state.product.map_or([0; 3], |p| p.counts.before(t));

    let (price, brand, category_code) = attributes(q, state.product);
    let mut levels = category_code.as_deref().map(|c| c.split('.')).into_iter().flatten();
    let level1 = levels.next().map(str::to_owned);
    let level2 = levels.next().map(str::to_owned);

    CartFeatures {
        price,
        brand: brand.filter(|b| !b.is_empty()),
        category_code_level1: level1,
        category_code_level2: level2,
        event_weekday: i64::from(time::weekday(t)),
        activity_count: so_far.len() as i64 + own,
        event_hour: i64::from(time::civil_hour(t).3),
        session_views: count(EventType::View),
        session_carts: count(EventType::Cart) + own,
        session_removals: count(EventType::RemoveFromCart),
        session_distinct_products: products.len() as i64,
        session_duration_seconds: session_start.map_or(0.0, |s| (t - s) as f64 / 1e6),
        product_views_in_session: so_far
            .iter()
            .filter(|e| e.kind == EventType::View && e.product_id == q.product_id)
            .count() as i64,
        user_prior_sessions: user[USER_SESSIONS] - own_start,
        user_prior_carts: user[CARTS],
        user_prior_purchases: user[PURCHASES],
        product_prior_carts: product[CARTS],
        product_prior_purchases: product[PURCHASES],
        product_conversion_rate: (product[PURCHASES] as f64 + 1.0) / (product[CARTS] as f64 + 2.0),
    }
}

/// The cart's price, brand and category: the query's where given, else the
/// product's latest known.
fn attributes(q: &CartQuery<'_>, product: Option<&ProductState>) -> (Option<f64>, Option<String>, Option<String>) {
    if let Some(a) = q.attrs.filter(|a| a.complete) {
        return (a.price, a.brand.clone(), a.category_code.clone());
    }
    let known = product.and_then(|p| p.attrs.as_ref());
    let given = q.attrs;
    let price = given.and_then(|a| a.price).or(known.map(|k| k.price));
    let brand = given.and_then(|a| a.brand.clone()).or_else(|| known.and_then(|k| k.brand.clone()));
    let category = given.and_then(|a| a.category_code.clone()).or_else(|| known.and_then(|k| k.category_code.clone()));
    (price, brand, category)
}

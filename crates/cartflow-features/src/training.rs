//! The point-in-time training set: history replayed in event-time order
//! through [`Entities`], one row per (session, product) at its first cart,
//! with the features as of that moment and the label from what came after.

use cartflow_core::time::Micros;
use cartflow_core::{Event, EventType};

use crate::compute::{CartAttrs, CartFeatures, CartQuery};
use crate::entities::{Entities, Map};

#[derive(Debug, Clone, PartialEq)]
pub struct TrainingRow {
    pub event_time: Micros,
    pub user_id: i64,
    pub product_id: i64,
    pub user_session: String,
    pub features: CartFeatures,
    /// The session bought the product at or after the cart.
    pub is_purchased: bool,
}

/// Feed it every event in event-time order (ties in any order), then
/// [`finish`](Self::finish). Events of one time are all applied before the
/// carts among them are answered, so a cart's features do not depend on how
/// ties were ordered, and equal what the online store answers once it holds
/// the events up to the cart.
pub struct TrainingSetBuilder {
    entities: Entities,
    rows: Vec<TrainingRow>,
    /// (session, product) → its row: the first cart only.
    first_carts: Map<(String, i64), usize>,
    /// (session, product) → the latest purchase.
    purchases: Map<(String, i64), Micros>,
    /// The events of the current time, not yet answered.
    pending: Vec<Event>,
    expire_every: Micros,
    next_expiry: Micros,
}

impl TrainingSetBuilder {
    pub fn new(session_ttl: Micros) -> Self {
        TrainingSetBuilder {
            entities: Entities::new(session_ttl),
            rows: Vec::new(),
            first_carts: Map::default(),
            purchases: Map::default(),
            pending: Vec::new(),
            // Dropping ended visits hourly keeps memory to about a TTL of sessions.
            expire_every: 3_600 * 1_000_000,
            next_expiry: Micros::MIN,
        }
    }

    pub fn push(&mut self, e: Event) {
        if self.pending.first().is_some_and(|p| p.event_time != e.event_time) {
            self.answer_pending();
        }
        self.pending.push(e);
    }

    fn answer_pending(&mut self) {
        let events = std::mem::take(&mut self.pending);
        for e in &events {
            self.entities.apply(e, false);
        }
        for e in events {
            let Some(session) = e.user_session.as_deref() else { continue };
            let key = (session.to_owned(), e.product_id);
            match e.event_type {
                EventType::Purchase => {
                    let t = self.purchases.entry(key).or_insert(e.event_time);
                    *t = (*t).max(e.event_time);
                }
                EventType::Cart if !self.first_carts.contains_key(&key) => {
                    let attrs = CartAttrs::of_event(&e);
                    let q = CartQuery {
                        time: e.event_time,
                        user_id: e.user_id,
                        product_id: e.product_id,
                        user_session: Some(session),
                        attrs: Some(&attrs),
                    };
                    let features = self.entities.features(&q);
                    self.first_carts.insert(key, self.rows.len());
                    self.rows.push(TrainingRow {
                        event_time: e.event_time,
                        user_id: e.user_id,
                        product_id: e.product_id,
                        user_session: session.to_owned(),
                        features,
                        is_purchased: false,
                    });
                }
                _ => {}
            }
        }
        let now = self.entities.watermark;
        if now >= self.next_expiry {
            self.entities.expire_sessions();
            self.next_expiry = now + self.expire_every;
        }
    }

    /// The rows in cart order, labelled, and the entity state at the end
    /// (what `features materialize` loads into the online store).
    pub fn finish(mut self) -> (Vec<TrainingRow>, Entities) {
        self.answer_pending();
        for ((session, product), row) in self.first_carts {
            let row = &mut self.rows[row];
            debug_assert_eq!((&row.user_session, row.product_id), (&session, product));
            row.is_purchased = self.purchases.get(&(session, product)).is_some_and(|&t| t >= row.event_time);
        }
        (self.rows, self.entities)
    }
}

//! The state machine every path shares: events in (inserts and CDC
//! deletes), entity state out. The streamer applies events as they arrive,
//! the batch replay in time order; both end in the same state.

use std::collections::HashMap;
use std::hash::Hasher;

use cartflow_core::time::Micros;
use cartflow_core::{Event, EventType};
use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};

use crate::compute::{CartFeatures, CartQuery, EntityView, compute};
use crate::state::*;

pub type Map<K, V> = HashMap<K, V, RandomState>;

/// A session's time to live by default: a day without events ends its visit.
pub const DEFAULT_SESSION_TTL: Micros = 86_400 * 1_000_000;

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Counted,
    /// An exact duplicate of an event already counted.
    Duplicate,
    /// A delete of an event the state does not hold.
    Unknown,
}

/// Identity of an event for duplicate detection: all nine fields.
pub fn fingerprint(e: &Event) -> u64 {
    let mut h = twox_hash::XxHash64::with_seed(0);
    h.write_i64(e.event_time);
    h.write_u8(e.event_type as u8);
    h.write_i64(e.product_id);
    h.write_i64(e.category_id);
    for s in [&e.category_code, &e.brand, &e.user_session] {
        // Length-prefixed, so (a, bc) and (ab, c) differ; None differs from "".
        match s {
            Some(s) => {
                h.write_u64(s.len() as u64);
                h.write(s.as_bytes());
            }
            None => h.write_u64(u64::MAX),
        }
    }
    h.write_u64(e.price.to_bits());
    h.write_i64(e.user_id);
    h.finish()
}

/// Every entity's state, keyed as the online store keys it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entities {
    pub session_ttl: Micros,
    pub sessions: Map<String, SessionState>,
    pub users: Map<i64, UserState>,
    pub products: Map<i64, ProductState>,
    /// The newest event time applied.
    pub watermark: Micros,
}

impl Entities {
    pub fn new(session_ttl: Micros) -> Self {
        Entities {
            session_ttl,
            sessions: Map::default(),
            users: Map::default(),
            products: Map::default(),
            watermark: Micros::MIN,
        }
    }

    /// Counts an event; `delete` takes back one counted before (a CDC delete).
    pub fn apply(&mut self, e: &Event, delete: bool) -> Applied {
        self.apply_held(e, delete, Held::default())
    }

    /// As [`Entities::apply`], leaving out the entities that already hold the
    /// event: after a crash part-way through writing a batch, the replay
    /// decides as the first pass did (the session is as it was) but changes
    /// only the user or product the first pass did not write.
    pub fn apply_held(&mut self, e: &Event, delete: bool, held: Held) -> Applied {
        let fp = fingerprint(e);
        let mut written = UserState::default();
        let user = if held.user { &mut written } else { self.users.entry(e.user_id).or_default() };
        let applied = match &e.user_session {
            Some(s) => {
                // Look up before inserting: most events belong to a known session.
                if !self.sessions.contains_key(s) {
                    self.sessions.insert(s.clone(), SessionState::default());
                }
                let session = self.sessions.get_mut(s).expect("just ensured");
                let applied = if delete {
                    remove_session_event(session, user, fp)
                } else {
                    add_session_event(session, user, e, fp, self.session_ttl)
                };
                if session.events.is_empty() {
                    self.sessions.remove(s);
                }
                applied
            }
            None => sessionless(user, e.event_time, fp, delete, self.session_ttl),
        };
        if applied != Applied::Counted {
            return applied;
        }
        let delta = if delete { -1 } else { 1 };
        let slot = match e.event_type {
            EventType::Cart => Some(CARTS),
            EventType::Purchase => Some(PURCHASES),
            _ => None,
        };
        if let Some(slot) = slot {
            user.counts.add(e.event_time, slot, delta);
        }
        if !held.product {
            let product = self.products.entry(e.product_id).or_default();
            if let Some(slot) = slot {
                product.counts.add(e.event_time, slot, delta);
            }
            if !delete {
                update_attrs(&mut product.attrs, e);
            }
        }
        self.watermark = self.watermark.max(e.event_time);
        Applied::Counted
    }

    /// Drops sessions whose visit ended (no event for the TTL before the
    /// watermark) and returns their keys. A dropped session that comes back
    /// starts a new visit, exactly as it would have without the drop.
    pub fn expire_sessions(&mut self) -> Vec<String> {
        let (now, ttl) = (self.watermark, self.session_ttl);
        let gone: Vec<String> =
            self.sessions.iter().filter(|(_, s)| s.expired_at(now, ttl)).map(|(k, _)| k.clone()).collect();
        for k in &gone {
            self.sessions.remove(k);
        }
        gone
    }

    /// Takes in the state of other input partitions: per-partition state
    /// merged is the state of all the events (`merging_partitions_…` below).
    pub fn merge(&mut self, other: Entities) {
        for (key, session) in other.sessions {
            merge_session(&mut self.sessions, key, session);
        }
        for (id, user) in other.users {
            self.users.entry(id).or_default().merge(&user);
        }
        for (id, product) in other.products {
            self.products.entry(id).or_default().merge(&product);
        }
        self.watermark = self.watermark.max(other.watermark);
    }

    pub fn view(&self, user_id: i64, product_id: i64, session: Option<&str>) -> EntityView<'_> {
        EntityView {
            session: session.and_then(|s| self.sessions.get(s)),
            user: self.users.get(&user_id),
            product: self.products.get(&product_id),
        }
    }

    pub fn features(&self, q: &CartQuery<'_>) -> CartFeatures {
        compute(q, self.view(q.user_id, q.product_id, q.user_session), self.session_ttl)
    }
}

/// Which entities of an event already hold it ([`Entities::apply_held`]).
/// The entity that decides whether an event counts (its session, or its user
/// when it has none) is never among them: the streamer writes products, then
/// users, then sessions, so when that one holds the event everything does and
/// the event is skipped whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub user: bool,
    pub product: bool,
}

/// A session sits in one partition; found in two (the topic's partitions
/// changed), the one with the later event stands.
fn merge_session(sessions: &mut Map<String, SessionState>, key: String, session: SessionState) {
    match sessions.get(&key) {
        Some(kept) if kept.last_time() >= session.last_time() => {}
        _ => {
            sessions.insert(key, session);
        }
    }
}

/// Keeps the product's attributes of its latest event; they rarely change,
/// so the strings are copied only when they do.
fn update_attrs(attrs: &mut Option<ProductAttrs>, e: &Event) {
    match attrs {
        Some(a) if e.event_time < a.time => {}
        Some(a) if a.brand == e.brand && a.category_code == e.category_code => {
            a.time = e.event_time;
            a.price = e.price;
        }
        _ => {
            *attrs = Some(ProductAttrs {
                time: e.event_time,
                price: e.price,
                brand: e.brand.clone(),
                category_code: e.category_code.clone(),
            })
        }
    }
}

fn add_session_event(session: &mut SessionState, user: &mut UserState, e: &Event, fp: u64, ttl: Micros) -> Applied {
    if session.expired_at(e.event_time, ttl) {
        // The old visit is over; its events stay counted for user and product.
        session.events.clear();
    }
    if session.events.iter().any(|x| x.fingerprint == fp) {
        return Applied::Duplicate;
    }
    let before = session.first_time();
    // Ties in fingerprint order: the state is the same whatever order the events came in.
    let at = session.events.partition_point(|x| (x.time, x.fingerprint) <= (e.event_time, fp));
    let event = SessionEvent { time: e.event_time, kind: e.event_type, product_id: e.product_id, fingerprint: fp };
    session.events.insert(at, event);
    move_session_start(user, before, session.first_time());
    Applied::Counted
}

fn remove_session_event(session: &mut SessionState, user: &mut UserState, fp: u64) -> Applied {
    let Some(i) = session.events.iter().position(|x| x.fingerprint == fp) else {
        return Applied::Unknown;
    };
    let before = session.first_time();
    session.events.remove(i);
    move_session_start(user, before, session.first_time());
    Applied::Counted
}

/// Keeps the user's count of visits begun in step with the session's first event.
fn move_session_start(user: &mut UserState, before: Option<Micros>, after: Option<Micros>) {
    if before != after {
        if let Some(t) = before {
            user.counts.add(t, USER_SESSIONS, -1);
        }
        if let Some(t) = after {
            user.counts.add(t, USER_SESSIONS, 1);
        }
    }
}

fn sessionless(user: &mut UserState, time: Micros, fp: u64, delete: bool, ttl: Micros) -> Applied {
    let seen = user.sessionless.iter().position(|&(_, f)| f == fp);
    match (seen, delete) {
        (Some(_), false) => Applied::Duplicate,
        (None, true) => Applied::Unknown,
        (Some(i), true) => {
            user.sessionless.remove(i);
            Applied::Counted
        }
        (None, false) => {
            // Duplicates share their time: older fingerprints can go.
            user.sessionless.retain(|&(t, _)| t + ttl >= time);
            user.sessionless.push((time, fp));
            Applied::Counted
        }
    }
}

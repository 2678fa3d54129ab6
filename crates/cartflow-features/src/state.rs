//! What the features need to remember, per entity: a session's events, a
//! user's and a product's counts over time, a product's latest attributes.
//! The streaming path keeps these in the online store; the batch path builds
//! them by replaying history. Both change them only through [`crate::Entities`].

use cartflow_core::EventType;
use cartflow_core::time::Micros;
use serde::{Deserialize, Serialize};

const SECOND: Micros = 1_000_000;

/// How far back counts stay exact for "before t" questions: counts by event
/// time over this span are kept beside the totals. Serving asks at about
/// now and the batch replay asks at its current time, both well inside it.
pub const RECENT_HORIZON: Micros = 10 * 60 * SECOND;

/// Counts (up to three kinds) as of any time within [`RECENT_HORIZON`] of
/// the newest event counted: totals, plus the recent past by event time, to
/// take back out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimedCounts {
    total: [i64; 3],
    /// (event time, counts at it), oldest first.
    recent: Vec<(Micros, [i32; 3])>,
}

impl TimedCounts {
    pub fn add(&mut self, time: Micros, slot: usize, delta: i32) {
        self.total[slot] += i64::from(delta);
        let newest = self.recent.last().map_or(time, |b| b.0.max(time));
        let cutoff = newest - RECENT_HORIZON;
        if time >= cutoff {
            match self.recent.binary_search_by_key(&time, |b| b.0) {
                Ok(i) => self.recent[i].1[slot] += delta,
                Err(i) => {
                    let mut counts = [0; 3];
                    counts[slot] = delta;
                    self.recent.insert(i, (time, counts));
                }
            }
        }
        let stale = self.recent.partition_point(|b| b.0 < cutoff);
        self.recent.drain(..stale);
    }

    /// Counts of events strictly before `t` (exact within the horizon).
    pub fn before(&self, t: Micros) -> [i64; 3] {
        let mut out = self.total;
        for (_, counts) in self.recent.iter().rev().take_while(|b| b.0 >= t) {
            for (o, c) in out.iter_mut().zip(counts) {
                *o -= i64::from(*c);
            }
        }
        out
    }

    pub fn totals(&self) -> [i64; 3] {
        self.total
    }

    /// Adds the counts of other events (another partition's): totals add,
    /// buckets add by time, and the buckets past the horizon of the newest
    /// go, so the result equals the counts of all the events added here.
    pub fn merge(&mut self, other: &TimedCounts) {
        for (t, o) in self.total.iter_mut().zip(other.total) {
            *t += o;
        }
        for (time, counts) in &other.recent {
            match self.recent.binary_search_by_key(time, |b| b.0) {
                Ok(i) => {
                    for (c, o) in self.recent[i].1.iter_mut().zip(counts) {
                        *c += o;
                    }
                }
                Err(i) => self.recent.insert(i, (*time, *counts)),
            }
        }
        if let Some(newest) = self.recent.last().map(|b| b.0) {
            let stale = self.recent.partition_point(|b| b.0 < newest - RECENT_HORIZON);
            self.recent.drain(..stale);
        }
    }
}

/// One event of a session, as much as the features need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    pub time: Micros,
    pub kind: EventType,
    pub product_id: i64,
    /// Of all nine fields: exact duplicates count once.
    pub fingerprint: u64,
}

/// The events of a session's current visit (a visit ends after the session's
/// time to live without events), in time order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    pub events: Vec<SessionEvent>,
}

impl SessionState {
    pub fn first_time(&self) -> Option<Micros> {
        self.events.first().map(|e| e.time)
    }

    pub fn last_time(&self) -> Option<Micros> {
        self.events.last().map(|e| e.time)
    }

    /// Whether the visit is over by `t`: nothing for longer than `ttl`.
    pub fn expired_at(&self, t: Micros, ttl: Micros) -> bool {
        self.last_time().is_some_and(|last| t > last + ttl)
    }
}

pub const USER_SESSIONS: usize = 0;
pub const CARTS: usize = 1;
pub const PURCHASES: usize = 2;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// Visits begun (at their first event), carts and purchases.
    pub counts: TimedCounts,
    /// Fingerprints of recent events without a session, to count duplicates once.
    pub sessionless: Vec<(Micros, u64)>,
}

impl UserState {
    /// Takes in another partition's part of this user.
    pub fn merge(&mut self, other: &UserState) {
        self.counts.merge(&other.counts);
        self.sessionless.extend_from_slice(&other.sessionless);
    }
}

/// A product's attributes as its latest event carried them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductAttrs {
    pub time: Micros,
    pub price: f64,
    pub brand: Option<String>,
    pub category_code: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductState {
    /// Carts and purchases (slots [`CARTS`] and [`PURCHASES`]).
    pub counts: TimedCounts,
    pub attrs: Option<ProductAttrs>,
}

impl ProductState {
    /// Takes in another partition's part of this product: counts add, the
    /// attributes of the later event stand (of two at one time, the higher price).
    pub fn merge(&mut self, other: &ProductState) {
        self.counts.merge(&other.counts);
        if let Some(theirs) = &other.attrs {
            let newer = self
                .attrs
                .as_ref()
                .is_none_or(|ours| (theirs.time, theirs.price.to_bits()) > (ours.time, ours.price.to_bits()));
            if newer {
                self.attrs = Some(theirs.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_before_a_time_leave_out_that_second_and_later() {
        let mut c = TimedCounts::default();
        for (t, slot) in [(10, CARTS), (20, CARTS), (20, PURCHASES), (25, CARTS)] {
            c.add(t * SECOND, slot, 1);
        }
        assert_eq!(c.before(20 * SECOND), [0, 1, 0]);
        assert_eq!(c.before(21 * SECOND), [0, 2, 1]);
        assert_eq!(c.before(26 * SECOND), [0, 3, 1]);
        // Out of order, still within the horizon.
        c.add(15 * SECOND, CARTS, 1);
        assert_eq!(c.before(20 * SECOND), [0, 2, 0]);
        c.add(15 * SECOND, CARTS, -1);
        assert_eq!(c.before(20 * SECOND), [0, 1, 0]);
    }

    #[test]
    fn old_buckets_fold_into_the_totals() {
        let mut c = TimedCounts::default();
        c.add(0, CARTS, 1);
        c.add(RECENT_HORIZON + 5 * SECOND, CARTS, 1);
        assert_eq!(c.recent.len(), 1);
        assert_eq!(c.before(RECENT_HORIZON), [0, 1, 0]);
        assert_eq!(c.totals(), [0, 2, 0]);
    }
}

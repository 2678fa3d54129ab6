//! Each prediction's label, from what its shopper did next: a purchase of
//! the predicted product in the same session, at or after the cart, makes
//! it positive; the session ending without one (no event for the feature
//! TTL, in event time) makes it negative. Only sessions with a prediction
//! waiting are kept.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use cartflow_core::time::Micros;
use serde::{Deserialize, Serialize};

/// A prediction as the labeller needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// Which model answered (an index the caller keeps).
    pub model: u32,
    pub product_id: i64,
    /// The cart's time: a purchase at or after it counts.
    pub event_time: Micros,
    pub probability: f64,
    pub will_purchase: bool,
}

/// A prediction with its label, labelled at `at` (event time).
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub prediction: Waiting,
    pub bought: bool,
    pub at: Micros,
}

/// A prediction waiting in its session, with the newest event of the
/// session since its cart: its session ends the TTL after that.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open {
    prediction: Waiting,
    last: Micros,
}

impl Open {
    fn end(&self, ttl: Micros) -> Micros {
        self.last.saturating_add(ttl)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Labeller {
    ttl: Micros,
    /// Sessions with predictions waiting.
    sessions: HashMap<String, Vec<Open>>,
    /// (when a session's first waiting prediction may end, the session):
    /// checked lazily, as later events move the ends.
    ends: BinaryHeap<Reverse<(Micros, String)>>,
    /// The newest event time seen.
    watermark: Micros,
    /// Predictions that could not be labelled: no session, or their session
    /// had already ended when they arrived.
    pub unlabelable: u64,
}

impl Labeller {
    pub fn new(ttl: Micros) -> Self {
        Labeller { ttl, sessions: HashMap::new(), ends: BinaryHeap::new(), watermark: Micros::MIN, unlabelable: 0 }
    }

    /// Predictions waiting for their outcome.
    pub fn waiting(&self) -> usize {
        self.sessions.values().map(Vec::len).sum()
    }

    pub fn watermark(&self) -> Micros {
        self.watermark
    }

    /// A prediction, read from the prediction log.
    pub fn predicted(&mut self, session: Option<&str>, prediction: Waiting) {
        let Some(session) = session else {
            self.unlabelable += 1;
            return;
        };
        let open = Open { last: prediction.event_time, prediction };
        if open.end(self.ttl) < self.watermark {
            // Its session ended before the prediction was read: what followed is not known.
            self.unlabelable += 1;
            return;
        }
        self.ends.push(Reverse((open.end(self.ttl), session.to_owned())));
        self.sessions.entry(session.to_owned()).or_default().push(open);
    }

    /// A validated event; the predictions it decides go to `out`. A
    /// session's events come in time order.
    pub fn event(&mut self, e: &cartflow_core::Event, out: &mut Vec<Labelled>) {
        self.watermark = self.watermark.max(e.event_time);
        let Some(id) = e.user_session.as_deref() else { return };
        let Some(waiting) = self.sessions.get_mut(id) else { return };
        let ttl = self.ttl;
        let purchase = e.event_type == cartflow_core::EventType::Purchase;
        waiting.retain_mut(|w| {
            if e.event_time < w.prediction.event_time {
                return true;
            }
            let (bought, at) = if e.event_time > w.end(ttl) {
                // Idle for longer than the TTL since: the session had ended.
                (false, w.end(ttl))
            } else if purchase && e.product_id == w.prediction.product_id {
                (true, e.event_time)
            } else {
                w.last = w.last.max(e.event_time);
                return true;
            };
            out.push(Labelled { prediction: w.prediction.clone(), bought, at });
            false
        });
        if waiting.is_empty() {
            self.sessions.remove(id);
        }
    }

    /// Ends the predictions whose session has been idle for the TTL before
    /// `until` (at most the watermark; less while older events may still
    /// come): they are negative.
    pub fn expire(&mut self, until: Micros, out: &mut Vec<Labelled>) {
        let until = until.min(self.watermark);
        let ttl = self.ttl;
        while let Some(Reverse((end, _))) = self.ends.peek() {
            if *end >= until {
                break;
            }
            let Reverse((_, id)) = self.ends.pop().expect("peeked");
            let Some(waiting) = self.sessions.get_mut(&id) else { continue };
            waiting.retain(|w| {
                let ended = w.end(ttl) < until;
                if ended {
                    out.push(Labelled { prediction: w.prediction.clone(), bought: false, at: w.end(ttl) });
                }
                !ended
            });
            match waiting.iter().map(|w| w.end(ttl)).min() {
                Some(next) => self.ends.push(Reverse((next, id))),
                None => {
                    self.sessions.remove(&id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cartflow_core::{Event, EventType};

    const MIN: Micros = 60_000_000;

    fn event(session: &str, kind: EventType, product: i64, at: Micros) -> Event {
        Event {
            event_time: at,
            event_type: kind,
            product_id: product,
            category_id: 1,
            category_code: None,
            brand: None,
            price: 1.0,
            user_id: 1,
            user_session: Some(session.into()),
        }
    }

    fn predict(l: &mut Labeller, session: &str, product: i64, at: Micros) {
        let w = Waiting { model: 0, product_id: product, event_time: at, probability: 0.5, will_purchase: true };
        l.predicted(Some(session), w);
    }

    fn labels(out: &[Labelled]) -> Vec<(i64, bool)> {
        out.iter().map(|l| (l.prediction.product_id, l.bought)).collect()
    }

    #[test]
    fn a_purchase_of_the_product_at_or_after_the_cart_is_positive() {
        let mut l = Labeller::new(30 * MIN);
        let mut out = Vec::new();
        predict(&mut l, "s", 7, 10 * MIN);
        predict(&mut l, "s", 8, 10 * MIN);
        l.event(&event("s", EventType::Purchase, 9, 11 * MIN), &mut out);
        l.event(&event("t", EventType::Purchase, 7, 11 * MIN), &mut out);
        assert!(out.is_empty(), "another product, another session");
        l.event(&event("s", EventType::Purchase, 7, 12 * MIN), &mut out);
        assert_eq!(labels(&out), [(7, true)]);
        assert_eq!(l.waiting(), 1);
    }

    #[test]
    fn a_purchase_before_the_cart_does_not_count() {
        let mut l = Labeller::new(30 * MIN);
        let mut out = Vec::new();
        predict(&mut l, "s", 7, 10 * MIN);
        l.event(&event("s", EventType::Purchase, 7, 9 * MIN), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_session_idle_for_the_ttl_ends_its_predictions_negative() {
        let mut l = Labeller::new(30 * MIN);
        let mut out = Vec::new();
        predict(&mut l, "s", 7, 10 * MIN);
        l.event(&event("s", EventType::View, 1, 20 * MIN), &mut out);
        l.event(&event("x", EventType::View, 1, 45 * MIN), &mut out);
        l.expire(Micros::MAX, &mut out);
        assert!(out.is_empty(), "the view at 20 min keeps the session until 50 min");
        l.event(&event("x", EventType::View, 1, 51 * MIN), &mut out);
        l.expire(Micros::MAX, &mut out);
        assert_eq!(labels(&out), [(7, false)]);
        assert_eq!(out[0].at, 50 * MIN);
        assert_eq!(l.waiting(), 0);
        assert!(l.sessions.is_empty() && l.ends.is_empty());
    }

    #[test]
    fn a_purchase_after_the_session_went_idle_for_the_ttl_does_not_count() {
        let mut l = Labeller::new(30 * MIN);
        let mut out = Vec::new();
        predict(&mut l, "s", 7, 10 * MIN);
        predict(&mut l, "s", 8, 10 * MIN);
        l.event(&event("s", EventType::View, 1, 35 * MIN), &mut out);
        l.event(&event("s", EventType::Purchase, 8, 64 * MIN), &mut out);
        assert_eq!(labels(&out), [(8, true)], "the view at 35 min kept the session open");
        out.clear();
        l.event(&event("s", EventType::Purchase, 7, 95 * MIN), &mut out);
        assert_eq!(labels(&out), [(7, false)]);
        assert_eq!(out[0].at, 94 * MIN);
    }

    #[test]
    fn a_prediction_without_a_session_or_after_its_end_is_counted_apart() {
        let mut l = Labeller::new(30 * MIN);
        let mut out = Vec::new();
        let w = Waiting { model: 0, product_id: 1, event_time: 0, probability: 0.1, will_purchase: false };
        l.predicted(None, w);
        l.event(&event("x", EventType::View, 1, 100 * MIN), &mut out);
        predict(&mut l, "s", 7, 10 * MIN);
        assert_eq!(l.unlabelable, 2);
        assert_eq!(l.waiting(), 0);
    }
}

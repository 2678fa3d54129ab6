//! Deliberately broken events for `produce --inject-invalid`, one kind of
//! damage per validation rule, so a run exercises every path to the invalid topic.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{Map, Value};

pub(crate) struct Injector {
    rng: Xoshiro256PlusPlus,
    share: f64,
}

/// (field, replacement; `None` removes the field).
const DAMAGE: &[(&str, Option<&str>)] = &[
    ("price", Some("-1.5")),
    ("price", Some("0")),
    ("price", Some("\"cheap\"")),
    ("event_type", Some("\"click\"")),
    ("event_time", Some("\"not a time\"")),
    ("event_time", Some("\"2201-01-01 00:00:00 UTC\"")),
    ("user_id", None),
    ("product_id", Some("\"p-17\"")),
    ("category_id", Some("-4")),
    ("brand", Some("42")),
];

impl Injector {
    pub(crate) fn new(share: f64, seed: u64) -> Self {
        Injector { rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x1a7e_c7ed), share }
    }

    /// With the configured probability, damages the JSON event in place; true when it did.
    pub(crate) fn maybe_damage(&mut self, json: &mut Vec<u8>) -> bool {
        if self.share <= 0.0 || self.rng.random::<f64>() >= self.share {
            return false;
        }
        let kind = self.rng.random_range(0..=DAMAGE.len());
        if kind == DAMAGE.len() {
            // Cut the JSON short, as a crashed client would.
            json.truncate(json.len() / 2);
            return true;
        }
        let Ok(mut obj) = serde_json::from_slice::<Map<String, Value>>(json) else {
            return false;
        };
        let (field, value) = DAMAGE[kind];
        match value {
            Some(v) => obj.insert(field.to_owned(), serde_json::from_str(v).expect("valid damage JSON")),
            None => obj.remove(field),
        };
        *json = serde_json::to_vec(&obj).expect("serializes");
        true
    }
}

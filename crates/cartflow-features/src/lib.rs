//! cartflow's features, defined once and shared by every path:
//!
//! - [`spec`]: the catalogue (name, type, set, view, meaning) — `cartflow features list`;
//! - [`state`]: what each entity remembers (session events, user and product counts);
//! - [`entities`]: the state machine that applies events (inserts, CDC deletes, duplicates);
//! - [`compute`]: a cart's features as of its time, from that state;
//! - [`training`]: the point-in-time training set, by replaying history;
//! - [`feast`]: the catalogue as a Feast feature repository, for Feast's SDK.
//!
//! The streaming path (online store) and the batch path (training set) both
//! apply events through [`Entities`] and answer through [`compute`]; that is
//! what makes their values equal. No I/O here.

pub mod compute;
pub mod entities;
pub mod feast;
pub mod spec;
pub mod state;
pub mod training;

pub use compute::{CartAttrs, CartFeatures, CartQuery, EntityView, compute};
pub use entities::{Applied, DEFAULT_SESSION_TTL, Entities, Held, Map, fingerprint};
pub use spec::{FEATURES, FeatureDef, FeatureSet, FeatureType, Value};
pub use training::{TrainingRow, TrainingSetBuilder};

#[cfg(test)]
mod tests;

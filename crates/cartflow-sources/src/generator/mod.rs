//! A generator of realistic clickstream events in the dataset's schema.
//!
//! Sessions start as a Poisson process with a daily cycle; each session walks
//! the catalog (mostly within one category, re-viewing some products), carts
//! some of what it viewed and buys some of what it carted. Whether a carted
//! item is bought depends on what the shopper did before the cart — views of
//! the product in the session, session activity, price, brand, category and
//! the user's earlier purchases — plus a per-user taste no feature can see, so
//! a model has real, but not perfect, signal to find.
//!
//! Deterministic per seed (xoshiro256++), time-ordered, whole seconds.

mod catalog;
mod session;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::str::FromStr;

use cartflow_core::Event;
use cartflow_core::time::Micros;
use rand::{Rng, SeedableRng};
use rand_distr::weighted::WeightedAliasIndex;
use rand_distr::{Distribution, LogNormal, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

use self::catalog::Catalog;
use self::session::{Session, User};

/// Which store's shape to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// The multi-category (electronics and more) store: view / cart / purchase, no removals.
    #[default]
    Electronics,
    /// The cosmetics store: cheap items, many carts and `remove_from_cart` events.
    Cosmetics,
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "electronics" => Ok(Profile::Electronics),
            "cosmetics" => Ok(Profile::Cosmetics),
            _ => Err(format!("unknown profile {s:?}: expected electronics or cosmetics")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Events to generate (then the generator ends, cutting open sessions as a slice of the real files does).
    pub events: u64,
    pub profile: Profile,
    /// Time of the first session start.
    pub start: Micros,
    /// Average events per day; the real October 2019 file has about 1.37 million.
    pub events_per_day: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 42,
            events: 1_000_000,
            profile: Profile::Electronics,
            start: 1_569_888_000_000_000, // 2019-10-01T00:00:00Z
            events_per_day: 1_370_000.0,
        }
    }
}

/// Mean events per session, from the real November figures (67.5M events, 13.8M sessions).
const EVENTS_PER_SESSION: f64 = 4.9;
const SECOND: Micros = 1_000_000;

pub struct Generator {
    cfg: GeneratorConfig,
    rng: Xoshiro256PlusPlus,
    catalog: Catalog,
    users: Vec<User>,
    user_activity: WeightedAliasIndex<f64>,
    /// Sessions in progress, by the time of their next event.
    due: BinaryHeap<Reverse<(Micros, u32)>>,
    sessions: Vec<Option<Session>>,
    free: Vec<u32>,
    next_start: Micros,
    emitted: u64,
    /// Events already decided, emitted before anything else (repeated carts).
    queue: VecDeque<Event>,
    gap: LogNormal<f64>,
    length: LogNormal<f64>,
}

impl Generator {
    pub fn new(cfg: GeneratorConfig) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let n_users = ((cfg.events as f64 / 16.0) as usize).clamp(200, 3_000_000);
        let n_products = ((cfg.events as f64 / 40.0) as usize).clamp(500, 200_000);
        let catalog = Catalog::build(&mut rng, cfg.profile, n_products);
        let taste = Normal::new(0.0, 1.0).expect("valid normal");
        let activity = LogNormal::new(0.0, 1.1).expect("valid lognormal");
        let mut ids = std::collections::HashSet::new();
        let mut weights = Vec::with_capacity(n_users);
        let users = (0..n_users)
            .map(|_| {
                weights.push(activity.sample(&mut rng));
                let id = loop {
                    let id = rng.random_range(400_000_000i64..620_000_000);
                    if ids.insert(id) {
                        break id;
                    }
                };
                User { id, taste: taste.sample(&mut rng), sessions: 0, purchases: 0 }
            })
            .collect();
        let user_activity = WeightedAliasIndex::new(weights).expect("positive weights");
        Generator {
            next_start: cfg.start,
            cfg,
            rng,
            catalog,
            users,
            user_activity,
            due: BinaryHeap::new(),
            sessions: Vec::new(),
            free: Vec::new(),
            emitted: 0,
            queue: VecDeque::new(),
            gap: LogNormal::new((25.0f64).ln(), 1.1).expect("valid lognormal"),
            length: LogNormal::new(0.95, 1.0).expect("valid lognormal"),
        }
    }

    /// Sessions per second at `t`: the average rate times a daily cycle that
    /// peaks in the (UTC) afternoon.
    fn session_rate(&self, t: Micros) -> f64 {
        let hour = (t / SECOND).rem_euclid(86_400) as f64 / 3600.0;
        let cycle = 1.0 + 0.6 * ((hour - 10.0) / 24.0 * std::f64::consts::TAU).sin();
        self.cfg.events_per_day / 86_400.0 / EVENTS_PER_SESSION * cycle
    }

    fn start_session(&mut self, t: Micros) {
        let user = self.user_activity.sample(&mut self.rng) as u32;
        let remaining = 1 + self.length.sample(&mut self.rng).floor().min(400.0) as u32;
        let focus = self.catalog.products[self.catalog.popular(&mut self.rng) as usize].category;
        let id = (self.rng.random::<f64>() >= 0.0005)
            .then(|| uuid::Builder::from_random_bytes(self.rng.random()).into_uuid().hyphenated().to_string());
        let session = Session::new(id, user, remaining, focus);
        self.users[user as usize].sessions += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                self.sessions[s as usize] = Some(session);
                s
            }
            None => {
                self.sessions.push(Some(session));
                (self.sessions.len() - 1) as u32
            }
        };
        self.due.push(Reverse((t, slot)));
    }

    fn next_gap(&mut self) -> Micros {
        (self.gap.sample(&mut self.rng).min(3600.0) as i64) * SECOND
    }
}

impl Iterator for Generator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.emitted >= self.cfg.events {
            return None;
        }
        if let Some(e) = self.queue.pop_front() {
            self.emitted += 1;
            return Some(e);
        }
        loop {
            let next_due = self.due.peek().map(|Reverse((t, _))| *t);
            if next_due.is_none_or(|t| self.next_start <= t) {
                let t = self.next_start;
                self.start_session(t - t % SECOND);
                let wait = -(1.0 - self.rng.random::<f64>()).ln() / self.session_rate(t);
                self.next_start = t + ((wait * SECOND as f64) as Micros).max(1);
                continue;
            }
            let Reverse((t, slot)) = self.due.pop().expect("peeked");
            let mut session = self.sessions[slot as usize].take().expect("due sessions exist");
            let user = &mut self.users[session.user as usize];
            let event = session.step(&mut self.rng, &self.catalog, user, self.cfg.profile, t, &mut self.queue);
            if session.is_over() {
                self.free.push(slot);
            } else {
                let gap = self.next_gap();
                self.sessions[slot as usize] = Some(session);
                self.due.push(Reverse((t + gap, slot)));
            }
            self.emitted += 1;
            return Some(event);
        }
    }
}

#[cfg(test)]
mod tests;

//! One shopper's session: what it views, carts, removes and buys next.

use std::collections::VecDeque;

use cartflow_core::time::Micros;
use cartflow_core::{Event, EventType};
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::Profile;
use super::catalog::Catalog;

pub(crate) struct User {
    pub id: i64,
    /// A taste for buying no feature can observe.
    pub taste: f64,
    pub sessions: u32,
    pub purchases: u32,
}

pub(crate) struct Session {
    id: Option<String>,
    pub user: u32,
    /// Browsing steps left (purchases still due come on top).
    remaining: u32,
    /// The category the shopper mostly browses.
    focus: u32,
    events: u32,
    /// Products viewed in this session and how often.
    views: Vec<(u32, u32)>,
    last_viewed: Option<u32>,
    carted: Vec<u32>,
    /// Carted products the shopper will buy before leaving.
    to_buy: Vec<u32>,
}

impl Session {
    pub(crate) fn new(id: Option<String>, user: u32, remaining: u32, focus: u32) -> Self {
        Session {
            id,
            user,
            remaining,
            focus,
            events: 0,
            views: Vec::new(),
            last_viewed: None,
            carted: Vec::new(),
            to_buy: Vec::new(),
        }
    }

    pub(crate) fn is_over(&self) -> bool {
        self.remaining == 0 && self.to_buy.is_empty()
    }

    /// The session's next event at `t`; repeated carts (the real data's
    /// tracking bug) go to `queue`.
    pub(crate) fn step(
        &mut self,
        rng: &mut Xoshiro256PlusPlus,
        catalog: &Catalog,
        user: &mut User,
        profile: Profile,
        t: Micros,
        queue: &mut VecDeque<Event>,
    ) -> Event {
        self.events += 1;
        let (cart_rate, remove_rate, direct_buy) = match profile {
            Profile::Electronics => (0.029, 0.0, 0.013),
            Profile::Cosmetics => (0.30, 0.8, 0.01),
        };
        self.remaining = self.remaining.saturating_sub(1);

        // Buy what was decided, mostly towards the end of the session.
        if !self.to_buy.is_empty() && (self.remaining == 0 || rng.random::<f64>() < 0.3) {
            let p = self.to_buy.swap_remove(rng.random_range(0..self.to_buy.len()));
            user.purchases += 1;
            return self.event(catalog, user, p, EventType::Purchase, t);
        }
        if !self.carted.is_empty() && rng.random::<f64>() < remove_rate * 0.5 {
            let p = self.carted.swap_remove(rng.random_range(0..self.carted.len()));
            self.to_buy.retain(|&q| q != p);
            return self.event(catalog, user, p, EventType::RemoveFromCart, t);
        }
        if let Some(p) = self.last_viewed {
            let views = self.views_of(p);
            let eager = (0.35 * user.taste).exp();
            if rng.random::<f64>() < cart_rate * (1.0 + 0.8 * (views - 1) as f64) * eager {
                self.last_viewed = None;
                if !self.carted.contains(&p) {
                    self.carted.push(p);
                    let buys = rng.random::<f64>() < self.buy_probability(catalog, user, p, views, t);
                    if buys {
                        self.to_buy.push(p);
                    }
                }
                let e = self.event(catalog, user, p, EventType::Cart, t);
                if rng.random::<f64>() < 0.08 {
                    for _ in 0..rng.random_range(1..=3) {
                        queue.push_back(e.clone());
                    }
                }
                return e;
            }
            if !self.carted.contains(&p) && rng.random::<f64>() < direct_buy * eager {
                user.purchases += 1;
                self.last_viewed = None;
                return self.event(catalog, user, p, EventType::Purchase, t);
            }
        }

        // A view: back to something seen, more of the focus category, or elsewhere.
        let r = rng.random::<f64>();
        let p = if !self.views.is_empty() && r < 0.3 {
            self.views[rng.random_range(0..self.views.len())].0
        } else if r < 0.8 {
            catalog.popular_in(rng, self.focus)
        } else {
            let p = catalog.popular(rng);
            self.focus = catalog.products[p as usize].category;
            p
        };
        match self.views.iter_mut().find(|(q, _)| *q == p) {
            Some((_, n)) => *n += 1,
            None => self.views.push((p, 1)),
        }
        self.last_viewed = Some(p);
        self.event(catalog, user, p, EventType::View, t)
    }

    fn views_of(&self, p: u32) -> u32 {
        self.views.iter().find(|(q, _)| *q == p).map_or(0, |(_, n)| *n)
    }

    /// The chance a carted item is bought: what the shopper did before the
    /// cart, the item, and the shopper's history and hidden taste.
    fn buy_probability(&self, catalog: &Catalog, user: &User, p: u32, views: u32, t: Micros) -> f64 {
        let product = &catalog.products[p as usize];
        let hour = (t / 1_000_000).rem_euclid(86_400) as f64 / 3600.0;
        let logit = -1.75 + 0.55 * (views as f64).ln() + 0.30 * (1.0 + self.events as f64).ln()
            - 0.30 * (product.price / 100.0).ln()
            + product.buy_effect
            + 0.60 * (1.0 + user.purchases as f64).ln()
            + 0.15 * (user.sessions as f64).ln()
            + 0.20 * ((hour - 14.0) / 24.0 * std::f64::consts::TAU).cos()
            + 0.70 * user.taste;
        1.0 / (1.0 + (-logit).exp())
    }

    fn event(&self, catalog: &Catalog, user: &User, p: u32, event_type: EventType, t: Micros) -> Event {
        let product = &catalog.products[p as usize];
        let category = &catalog.categories[product.category as usize];
        Event {
            event_time: t,
            event_type,
            product_id: product.id,
            category_id: category.id,
            category_code: category.code.map(str::to_owned),
            brand: product.brand.map(str::to_owned),
            price: product.price,
            user_id: user.id,
            user_session: self.id.clone(),
        }
    }
}

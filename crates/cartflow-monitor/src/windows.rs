//! One model version's scorecards: in total, and over the last hour and the
//! last day of label time (event time), as merges of minute and hour buckets.

use std::collections::VecDeque;

use cartflow_core::time::Micros;
use serde::{Deserialize, Serialize};

use crate::scorecard::{Figures, Outcome, Scorecard};

const MINUTE: Micros = 60_000_000;
const HOUR: Micros = 60 * MINUTE;
const DAY: Micros = 24 * HOUR;

/// The windows the monitor reports, by name.
pub const WINDOWS: [&str; 3] = ["1h", "1d", "total"];

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Windowed {
    total: Scorecard,
    /// (bucket start, scorecard), oldest first: minutes for the hour, hours for the day.
    minutes: VecDeque<(Micros, Scorecard)>,
    hours: VecDeque<(Micros, Scorecard)>,
}

fn add_to(buckets: &mut VecDeque<(Micros, Scorecard)>, width: Micros, at: Micros, o: Outcome) {
    let start = at.div_euclid(width) * width;
    // Kept in order of start: a late label goes to its own bucket.
    let at = buckets.partition_point(|(s, _)| *s < start);
    match buckets.get_mut(at) {
        Some((s, card)) if *s == start => card.add(o),
        _ => {
            let mut card = Scorecard::default();
            card.add(o);
            buckets.insert(at, (start, card));
        }
    }
}

fn merged(buckets: &VecDeque<(Micros, Scorecard)>, since: Micros) -> Scorecard {
    let mut card = Scorecard::default();
    for (_, c) in buckets.iter().filter(|(s, _)| *s >= since) {
        card.merge(c);
    }
    card
}

impl Windowed {
    pub fn add(&mut self, at: Micros, o: Outcome) {
        self.total.add(o);
        add_to(&mut self.minutes, MINUTE, at, o);
        add_to(&mut self.hours, HOUR, at, o);
    }

    /// Drops the buckets that no window ending at `now` reaches.
    pub fn forget_before(&mut self, now: Micros) {
        while self.minutes.front().is_some_and(|(s, _)| *s + MINUTE <= now - HOUR) {
            self.minutes.pop_front();
        }
        while self.hours.front().is_some_and(|(s, _)| *s + HOUR <= now - DAY) {
            self.hours.pop_front();
        }
    }

    /// The figures of each of [`WINDOWS`] ending at `now` (the hour and the
    /// day are whole buckets: up to a minute or an hour longer).
    pub fn figures(&self, now: Micros) -> [Figures; 3] {
        let since = |width: Micros, span: Micros| (now - span).div_euclid(width) * width;
        [
            merged(&self.minutes, since(MINUTE, HOUR)).figures(),
            merged(&self.hours, since(HOUR, DAY)).figures(),
            self.total.figures(),
        ]
    }

    pub fn labelled(&self) -> u64 {
        self.total.labelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(bought: bool) -> Outcome {
        Outcome { probability: if bought { 0.8 } else { 0.3 }, will_purchase: bought, bought }
    }

    #[test]
    fn the_hour_and_the_day_keep_what_is_recent_and_the_total_everything() {
        let mut w = Windowed::default();
        w.add(0, outcome(true));
        w.add(2 * HOUR, outcome(false));
        w.add(2 * HOUR + 30 * MINUTE, outcome(true));
        let now = 2 * HOUR + 40 * MINUTE;
        let [hour, day, total] = w.figures(now);
        assert_eq!((hour.labelled, day.labelled, total.labelled), (2, 3, 3));
        w.add(26 * HOUR + 30 * MINUTE, outcome(false));
        w.forget_before(26 * HOUR + 31 * MINUTE);
        let [hour, day, total] = w.figures(26 * HOUR + 31 * MINUTE);
        assert_eq!((hour.labelled, day.labelled, total.labelled), (1, 3, 4));
        assert_eq!(w.minutes.len(), 1);
    }

    #[test]
    fn a_late_label_lands_in_its_own_bucket() {
        let mut w = Windowed::default();
        w.add(10 * MINUTE, outcome(true));
        w.add(5 * MINUTE, outcome(false));
        let starts: Vec<Micros> = w.minutes.iter().map(|(s, _)| *s).collect();
        assert_eq!(starts, [5 * MINUTE, 10 * MINUTE]);
    }
}

//! The dashboard's time series: every few seconds a thread reads this
//! process's own Prometheus exposition, and each chart point is the change
//! between two readings — a rate for counters, a quantile for histograms
//! (as PromQL's `rate` and `histogram_quantile` compute them).
//!
//! The exposition is read by hand, not with a parser crate: it is this
//! process's own output, and only two line shapes are read (a series and
//! its value, a histogram bucket).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// One reading: the sums the charts need, by series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// `cartflow_events_in_total` summed by stage.
    pub events_in: BTreeMap<String, f64>,
    /// `cartflow_consumer_lag_records` summed by stage.
    pub lag: BTreeMap<String, f64>,
    /// `cartflow_predict_requests_total`, every status.
    pub predictions: f64,
    /// `cartflow_predict_request_seconds` buckets (upper bound, cumulative count).
    pub latency: Vec<(f64, f64)>,
    /// `cartflow_freshness_seconds` buckets by stage.
    pub freshness: BTreeMap<String, Vec<(f64, f64)>>,
}

/// The value of label `name` in a `{a="x",b="y"}` list.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// Adds `value` at `le` to a cumulative bucket list (labels other than `le` summed).
fn add_bucket(buckets: &mut Vec<(f64, f64)>, le: f64, value: f64) {
    match buckets.iter_mut().find(|(b, _)| *b == le) {
        Some((_, n)) => *n += value,
        None => {
            buckets.push((le, value));
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
}

impl Reading {
    /// Reads the series the charts use out of a text exposition.
    pub fn parse(exposition: &str) -> Reading {
        let mut r = Reading::default();
        for line in exposition.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let le =
                || label(labels, "le").and_then(|v| if v == "+Inf" { Some(f64::INFINITY) } else { v.parse().ok() });
            let stage = || label(labels, "stage").unwrap_or("").to_owned();
            match name {
                "cartflow_events_in_total" => *r.events_in.entry(stage()).or_default() += value,
                "cartflow_consumer_lag_records" => *r.lag.entry(stage()).or_default() += value,
                "cartflow_predict_requests_total" => r.predictions += value,
                "cartflow_predict_request_seconds_bucket" => {
                    if let Some(le) = le() {
                        add_bucket(&mut r.latency, le, value);
                    }
                }
                "cartflow_freshness_seconds_bucket" => {
                    if let Some(le) = le() {
                        add_bucket(r.freshness.entry(stage()).or_default(), le, value);
                    }
                }
                _ => {}
            }
        }
        r
    }
}

/// The `q` quantile of what fell into the buckets between two readings,
/// interpolated inside its bucket as `histogram_quantile` does; `None`
/// when nothing fell in. The top bucket's observations count at its lower bound.
pub fn quantile(q: f64, before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let delta: Vec<(f64, f64)> =
        after.iter().map(|&(le, n)| (le, n - before.iter().find(|(b, _)| *b == le).map_or(0.0, |(_, m)| *m))).collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, n) in &delta {
        if n >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = n - lower.1;
            let share = if within > 0.0 { (rank - lower.1) / within } else { 1.0 };
            return Some(lower.0 + (le - lower.0) * share);
        }
        lower = (le, n);
    }
    None
}

/// The last [`KEEP`] readings, one per [`EVERY`].
#[derive(Default)]
pub struct History {
    readings: Mutex<VecDeque<(Instant, Reading)>>,
}

/// How often a reading is taken.
pub const EVERY: Duration = Duration::from_secs(5);
/// Readings kept: ten minutes.
pub const KEEP: usize = 120;

/// A chart's lines: (series name, points as (seconds before now, value)).
pub type Lines = Vec<(String, Vec<(f64, f64)>)>;

impl History {
    pub fn push(&self, at: Instant, reading: Reading) {
        let mut r = self.readings.lock().expect("history lock");
        if r.len() == KEEP {
            r.pop_front();
        }
        r.push_back((at, reading));
    }

    /// Takes a reading of `render()` every [`EVERY`] on a thread of its
    /// own, for as long as the history is kept anywhere else.
    pub fn sample(history: &Arc<History>, render: Arc<dyn Fn() -> String + Send + Sync>) {
        let weak: Weak<History> = Arc::downgrade(history);
        let _ = std::thread::Builder::new().name("dashboard-history".into()).spawn(move || {
            while let Some(history) = weak.upgrade() {
                history.push(Instant::now(), Reading::parse(&render()));
                drop(history);
                std::thread::sleep(EVERY);
            }
        });
    }

    /// One line per key of `series`, from consecutive readings.
    fn lines(&self, series: impl Fn(&Reading, &Reading, f64) -> Vec<(String, Option<f64>)>) -> Lines {
        let r = self.readings.lock().expect("history lock");
        let now = Instant::now();
        let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for ((t0, a), (t1, b)) in r.iter().zip(r.iter().skip(1)) {
            let secs = t1.duration_since(*t0).as_secs_f64();
            let ago = -(now.duration_since(*t1).as_secs_f64());
            for (name, value) in series(a, b, secs) {
                if let Some(v) = value {
                    lines.entry(name).or_default().push((ago, v));
                }
            }
        }
        lines.into_iter().collect()
    }

    /// Events per second read by each stage.
    pub fn events_per_sec(&self) -> Lines {
        self.lines(|a, b, secs| {
            b.events_in
                .iter()
                .map(|(s, n)| (s.clone(), Some((n - a.events_in.get(s).unwrap_or(&0.0)) / secs)))
                .collect()
        })
    }

    /// Records waiting behind each stage.
    pub fn lag(&self) -> Lines {
        self.lines(|_, b, _| b.lag.iter().map(|(s, n)| (s.clone(), Some(*n))).collect())
    }

    /// Predictions answered per second.
    pub fn predictions_per_sec(&self) -> Lines {
        self.lines(|a, b, secs| vec![("/predict".into(), Some((b.predictions - a.predictions) / secs))])
    }

    /// `/predict` latency p50 and p99, in milliseconds.
    pub fn latency_ms(&self) -> Lines {
        self.lines(|a, b, _| {
            [("p50", 0.5), ("p99", 0.99)]
                .into_iter()
                .map(|(name, q)| (name.into(), quantile(q, &a.latency, &b.latency).map(|s| s * 1000.0)))
                .collect()
        })
    }

    /// Freshness p99 per stage, in milliseconds.
    pub fn freshness_p99_ms(&self) -> Lines {
        self.lines(|a, b, _| {
            b.freshness
                .iter()
                .map(|(s, after)| {
                    let before = a.freshness.get(s).map_or(&[][..], Vec::as_slice);
                    (s.clone(), quantile(0.99, before, after).map(|v| v * 1000.0))
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE cartflow_events_in_total counter\n\
        cartflow_events_in_total{stage=\"validate\",topic=\"a\"} 100\n\
        cartflow_events_in_total{stage=\"validate\",topic=\"b\"} 50\n\
        cartflow_consumer_lag_records{stage=\"validate\",topic=\"a\",partition=\"0\"} 7\n\
        cartflow_predict_requests_total{status=\"200\"} 10\n\
        cartflow_predict_request_seconds_bucket{le=\"0.001\"} 0\n\
        cartflow_predict_request_seconds_bucket{le=\"0.01\"} 10\n\
        cartflow_predict_request_seconds_bucket{le=\"+Inf\"} 10\n";
    const AFTER: &str = "cartflow_events_in_total{stage=\"validate\",topic=\"a\"} 400\n\
        cartflow_events_in_total{stage=\"validate\",topic=\"b\"} 250\n\
        cartflow_consumer_lag_records{stage=\"validate\",topic=\"a\",partition=\"0\"} 3\n\
        cartflow_predict_requests_total{status=\"200\"} 100\n\
        cartflow_predict_requests_total{status=\"400\"} 10\n\
        cartflow_predict_request_seconds_bucket{le=\"0.001\"} 50\n\
        cartflow_predict_request_seconds_bucket{le=\"0.01\"} 110\n\
        cartflow_predict_request_seconds_bucket{le=\"+Inf\"} 110\n";

    #[test]
    fn a_reading_sums_by_stage_and_keeps_buckets() {
        let r = Reading::parse(BEFORE);
        assert_eq!(r.events_in["validate"], 150.0);
        assert_eq!(r.lag["validate"], 7.0);
        assert_eq!(r.predictions, 10.0);
        assert_eq!(r.latency, vec![(0.001, 0.0), (0.01, 10.0), (f64::INFINITY, 10.0)]);
    }

    #[test]
    fn rates_and_quantiles_come_from_the_change_between_readings() {
        let h = History::default();
        let t = Instant::now();
        h.push(t, Reading::parse(BEFORE));
        h.push(t + Duration::from_secs(5), Reading::parse(AFTER));
        assert_eq!(h.events_per_sec()[0].1[0].1, 100.0); // (650 - 150) / 5
        assert_eq!(h.predictions_per_sec()[0].1[0].1, 20.0);
        assert_eq!(h.lag()[0].1[0].1, 3.0);
        // 100 new requests: 50 under 1 ms, 50 in (1 ms, 10 ms]: p50 is 1 ms, p99 near 10.
        let latency = h.latency_ms();
        let p50 = latency.iter().find(|(n, _)| n == "p50").unwrap().1[0].1;
        let p99 = latency.iter().find(|(n, _)| n == "p99").unwrap().1[0].1;
        assert!((p50 - 1.0).abs() < 1e-9, "{p50}");
        assert!((p99 - 9.82).abs() < 1e-9, "{p99}");
        // Nothing new: no point rather than a made-up one.
        assert_eq!(quantile(0.5, &[(1.0, 5.0), (f64::INFINITY, 5.0)], &[(1.0, 5.0), (f64::INFINITY, 5.0)]), None);
    }
}

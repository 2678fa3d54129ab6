//! Alerts on the invalid-event rate: when the share of invalid records over a
//! sliding window passes a threshold, a log line, a gauge, and a POST of
//! Alertmanager's webhook JSON (version 4) to a configured URL; the same
//! again, with status `resolved`, when it falls back. While firing, the
//! notification repeats, as Alertmanager's `repeat_interval` does.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::metrics::{ALERT_FIRING, ALERT_NOTIFICATIONS, INVALID_RATE};

pub const ALERT_NAME: &str = "CartflowInvalidEventRateHigh";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Share of invalid records (0–1) above which the alert fires.
    pub invalid_rate_threshold: f64,
    pub window_secs: u64,
    /// Fewer records than this in the window never fire.
    pub min_events: u64,
    /// Where to POST Alertmanager-shaped notifications.
    pub webhook_url: Option<String>,
    /// Re-notify this often while firing.
    pub repeat_secs: u64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            invalid_rate_threshold: 0.05,
            window_secs: 60,
            min_events: 100,
            webhook_url: None,
            repeat_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// A change worth telling someone about.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub status: AlertStatus,
    pub rate: f64,
    pub invalid: u64,
    pub total: u64,
    /// When the alert started firing, ms since the epoch.
    pub starts_at_ms: i64,
    /// When it resolved, for `Resolved`.
    pub ends_at_ms: Option<i64>,
}

/// The windowed invalid rate and the firing state. Pure: time comes in.
pub struct InvalidRateMonitor {
    cfg: AlertConfig,
    /// (second, total, invalid), oldest first.
    buckets: VecDeque<(i64, u64, u64)>,
    firing_since: Option<i64>,
    last_notice_ms: i64,
}

impl InvalidRateMonitor {
    pub fn new(cfg: AlertConfig) -> Self {
        InvalidRateMonitor { cfg, buckets: VecDeque::new(), firing_since: None, last_notice_ms: 0 }
    }

    pub fn config(&self) -> &AlertConfig {
        &self.cfg
    }

    /// Adds a batch's counts at `now_ms` and says whether to notify.
    pub fn observe(&mut self, now_ms: i64, total: u64, invalid: u64) -> Option<Notice> {
        let sec = now_ms.div_euclid(1000);
        match self.buckets.back_mut() {
            Some((s, t, i)) if *s == sec => {
                *t += total;
                *i += invalid;
            }
            _ => self.buckets.push_back((sec, total, invalid)),
        }
        let oldest = sec - self.cfg.window_secs as i64;
        while self.buckets.front().is_some_and(|(s, _, _)| *s <= oldest) {
            self.buckets.pop_front();
        }
        let (total, invalid) = self.buckets.iter().fold((0, 0), |(t, i), (_, bt, bi)| (t + bt, i + bi));
        let rate = if total == 0 { 0.0 } else { invalid as f64 / total as f64 };
        metrics::gauge!(INVALID_RATE).set(rate);
        let over = total >= self.cfg.min_events && rate > self.cfg.invalid_rate_threshold;
        let notice =
            |status, starts_at_ms, ends_at_ms| Notice { status, rate, invalid, total, starts_at_ms, ends_at_ms };
        match (self.firing_since, over) {
            (None, true) => {
                self.firing_since = Some(now_ms);
                self.last_notice_ms = now_ms;
                Some(notice(AlertStatus::Firing, now_ms, None))
            }
            (Some(since), true) if now_ms - self.last_notice_ms >= self.cfg.repeat_secs as i64 * 1000 => {
                self.last_notice_ms = now_ms;
                Some(notice(AlertStatus::Firing, since, None))
            }
            (Some(since), false) => {
                self.firing_since = None;
                Some(notice(AlertStatus::Resolved, since, Some(now_ms)))
            }
            _ => None,
        }
    }
}

fn rfc3339_ms(ms: i64) -> String {
    cartflow_core::time::rfc3339(ms * 1000)
}

/// Alertmanager's webhook body (`version: "4"`) for one notice.
pub fn alertmanager_payload(n: &Notice, cfg: &AlertConfig, stage: &str) -> Value {
    let labels = json!({ "alertname": ALERT_NAME, "severity": "warning", "service": "cartflow", "stage": stage });
    let annotations = json!({
        "summary": format!("{:.1}% of events are invalid", n.rate * 100.0),
        "description": format!(
            "{} of {} events in the last {} s were invalid (threshold {:.1}%).",
            n.invalid, n.total, cfg.window_secs, cfg.invalid_rate_threshold * 100.0
        ),
    });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{ALERT_NAME}\"}}"),
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": "cartflow",
        "groupLabels": { "alertname": ALERT_NAME },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": n.status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339_ms(n.starts_at_ms),
            "endsAt": n.ends_at_ms.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), rfc3339_ms),
            "generatorURL": "",
            "fingerprint": format!("{:016x}", cartflow_log::murmur2(format!("{ALERT_NAME}{stage}").as_bytes()) as u32),
        }],
    })
}

/// Logs, sets the gauge and hands notices to a background sender so a slow
/// webhook never stalls the stage.
pub struct Alerter {
    monitor: InvalidRateMonitor,
    stage: &'static str,
    tx: Option<mpsc::Sender<Value>>,
    sender: Option<JoinHandle<()>>,
}

impl Alerter {
    pub fn new(cfg: AlertConfig, stage: &'static str) -> Self {
        let (tx, sender) = match cfg.webhook_url.clone() {
            Some(url) => {
                let (tx, rx) = mpsc::channel::<Value>();
                let handle = std::thread::Builder::new()
                    .name("alert-webhook".into())
                    .spawn(move || deliver(&url, rx))
                    .expect("spawn alert sender");
                (Some(tx), Some(handle))
            }
            None => (None, None),
        };
        metrics::gauge!(ALERT_FIRING, "alertname" => ALERT_NAME).set(0.0);
        Alerter { monitor: InvalidRateMonitor::new(cfg), stage, tx, sender }
    }

    pub fn observe(&mut self, now_ms: i64, total: u64, invalid: u64) {
        let Some(n) = self.monitor.observe(now_ms, total, invalid) else {
            return;
        };
        match n.status {
            AlertStatus::Firing => {
                metrics::gauge!(ALERT_FIRING, "alertname" => ALERT_NAME).set(1.0);
                tracing::warn!(
                    alert = ALERT_NAME,
                    rate = format!("{:.2}%", n.rate * 100.0),
                    invalid = n.invalid,
                    total = n.total,
                    "ALERT firing: invalid event rate above {:.1}%",
                    self.monitor.config().invalid_rate_threshold * 100.0
                );
            }
            AlertStatus::Resolved => {
                metrics::gauge!(ALERT_FIRING, "alertname" => ALERT_NAME).set(0.0);
                tracing::info!(alert = ALERT_NAME, rate = format!("{:.2}%", n.rate * 100.0), "alert resolved");
            }
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(alertmanager_payload(&n, self.monitor.config(), self.stage));
        }
    }
}

impl Drop for Alerter {
    /// Sends what is queued before the process goes.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.sender.take() {
            let _ = h.join();
        }
    }
}

fn deliver(url: &str, rx: mpsc::Receiver<Value>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().into();
    for body in rx {
        let status = body["status"].as_str().unwrap_or("").to_owned();
        let mut outcome = "failed";
        for attempt in 0..3 {
            match agent.post(url).send_json(&body) {
                Ok(_) => {
                    outcome = "sent";
                    break;
                }
                Err(e) => {
                    tracing::warn!(url, attempt, "alert webhook failed: {e}");
                    std::thread::sleep(Duration::from_millis(200 << attempt));
                }
            }
        }
        metrics::counter!(ALERT_NOTIFICATIONS, "status" => status, "outcome" => outcome).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AlertConfig {
        AlertConfig { invalid_rate_threshold: 0.1, window_secs: 10, min_events: 50, webhook_url: None, repeat_secs: 60 }
    }

    #[test]
    fn fires_over_the_threshold_repeats_and_resolves() {
        let mut m = InvalidRateMonitor::new(cfg());
        assert_eq!(m.observe(0, 40, 30), None, "too few events to judge");
        let fired = m.observe(1000, 60, 10).expect("40/100 invalid");
        assert_eq!((fired.status, fired.total, fired.invalid), (AlertStatus::Firing, 100, 40));
        assert_eq!(m.observe(2000, 100, 50), None, "already firing");
        let again = m.observe(61_000, 100, 50).expect("repeat interval passed");
        assert_eq!((again.status, again.starts_at_ms), (AlertStatus::Firing, 1000));
        // The window slides: old invalid records drop out and it resolves.
        let resolved = m.observe(75_000, 1000, 1).expect("rate fell");
        assert_eq!((resolved.status, resolved.ends_at_ms), (AlertStatus::Resolved, Some(75_000)));
    }

    #[test]
    fn payload_has_alertmanagers_shape() {
        let n = Notice {
            status: AlertStatus::Firing,
            rate: 0.2,
            invalid: 20,
            total: 100,
            starts_at_ms: 1_569_888_000_000,
            ends_at_ms: None,
        };
        let p = alertmanager_payload(&n, &cfg(), "validate");
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["alerts"][0]["labels"]["alertname"], ALERT_NAME);
        assert_eq!(p["alerts"][0]["startsAt"], "2019-10-01T00:00:00Z");
        assert_eq!(p["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert!(p["commonAnnotations"]["summary"].as_str().unwrap().contains("20.0%"));
    }
}

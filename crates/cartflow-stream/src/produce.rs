//! The producer: CSV files or the generator into `tracking.raw_user_behavior`,
//! keyed by `user_session` so a session stays in order in one partition.
//!
//! Good rows go as JSON with the dataset's field names and time form. A broken
//! row (wrong field count) goes as its CSV text with `content-type: text/csv`
//! and its `file:line`, for the validator to reject with that location.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cartflow_log::{EventLog, ProducerRecord};
use cartflow_sources::json::{event_json, raw_event_json};
use cartflow_sources::{CsvEventReader, Generator, GeneratorConfig};
use cartflow_trace::{RecordSampler, TRACEPARENT};
use serde::Serialize;

use crate::inject::Injector;
use crate::topics::{CONTENT_TYPE, CSV_CONTENT_TYPE, SOURCE_LOCATION};
use crate::{Result, StageControl};

pub enum Source {
    Files(Vec<PathBuf>),
    Generated(GeneratorConfig),
}

#[derive(Debug, Clone)]
pub struct ProduceConfig {
    pub topic: String,
    /// Events per second; `None` is as fast as possible.
    pub rate: Option<f64>,
    /// Generated events go when the clock reaches their event time (a live
    /// clickstream, for freshness by event time) instead of by `rate`.
    pub at_event_time: bool,
    /// Share of events to damage on purpose (for testing the invalid path).
    pub inject_invalid: f64,
    pub seed: u64,
    /// Records per durable flush.
    pub batch: usize,
}

impl Default for ProduceConfig {
    fn default() -> Self {
        ProduceConfig {
            topic: crate::topics::RAW.into(),
            rate: None,
            at_event_time: false,
            inject_invalid: 0.0,
            seed: 42,
            batch: 16_384,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProduceStats {
    pub records: u64,
    /// CSV rows with the wrong number of fields, sent on as CSV text.
    pub broken_rows: u64,
    pub injected_invalid: u64,
    pub files: usize,
}

struct Sink<'a> {
    producer: Box<dyn cartflow_log::Producer>,
    cfg: &'a ProduceConfig,
    control: &'a StageControl,
    stats: ProduceStats,
    injector: Injector,
    started: Instant,
    unflushed: usize,
    progress: &'a mut dyn FnMut(&ProduceStats),
    /// Picks the records traced from here through every stage.
    sampler: RecordSampler,
}

impl Sink<'_> {
    fn send(&mut self, key: Option<&str>, mut value: Vec<u8>, headers: &[(&str, &[u8])]) -> Result<()> {
        if headers.is_empty() && self.injector.maybe_damage(&mut value) {
            self.stats.injected_invalid += 1;
        }
        let traceparent = self.sampler.root("produce");
        let with_trace: Vec<(&str, &[u8])>;
        let headers = match &traceparent {
            Some(tp) => {
                with_trace = headers.iter().copied().chain([(TRACEPARENT, tp.as_bytes())]).collect();
                &with_trace[..]
            }
            None => headers,
        };
        let record = ProducerRecord::new(&self.cfg.topic, key.map(str::as_bytes), &value).headers(headers);
        self.producer.send(record)?;
        self.stats.records += 1;
        self.unflushed += 1;
        if self.unflushed >= self.cfg.batch {
            self.flush()?;
        }
        if let Some(rate) = self.cfg.rate.filter(|_| !self.cfg.at_event_time) {
            self.wait_until(self.started + Duration::from_secs_f64(self.stats.records as f64 / rate))?;
        }
        Ok(())
    }

    fn wait_until(&mut self, due: Instant) -> Result<()> {
        let now = Instant::now();
        if due > now + Duration::from_millis(2) {
            // Make what was sent visible before waiting.
            self.flush()?;
            std::thread::sleep(due - now);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.producer.flush()?;
        self.sampler.flushed();
        metrics::counter!(crate::metrics::EVENTS_OUT, "stage" => "produce", "topic" => self.cfg.topic.clone())
            .increment(self.unflushed as u64);
        self.unflushed = 0;
        (self.progress)(&self.stats);
        Ok(())
    }
}

/// Sends every event of `source` (until stopped) and flushes them durably.
pub fn run_produce(
    log: &dyn EventLog,
    source: Source,
    cfg: &ProduceConfig,
    control: &StageControl,
    progress: &mut dyn FnMut(&ProduceStats),
) -> Result<ProduceStats> {
    let mut sink = Sink {
        producer: log.producer()?,
        cfg,
        control,
        stats: ProduceStats::default(),
        injector: Injector::new(cfg.inject_invalid, cfg.seed),
        started: Instant::now(),
        unflushed: 0,
        progress,
        sampler: RecordSampler::configured(),
    };
    match source {
        Source::Generated(gen_cfg) => {
            // With --start now, the generator's start is about this instant.
            let (clock, first) = (Instant::now(), gen_cfg.start);
            for event in Generator::new(gen_cfg) {
                if sink.control.stopped() {
                    break;
                }
                if cfg.at_event_time {
                    sink.wait_until(clock + Duration::from_micros((event.event_time - first).max(0) as u64))?;
                }
                let mut value = Vec::with_capacity(256);
                event_json(&event, &mut value);
                sink.send(event.user_session.as_deref(), value, &[])?;
            }
        }
        Source::Files(paths) => {
            for path in paths {
                let reader = CsvEventReader::open(&path)?;
                sink.stats.files += 1;
                let name = path.display().to_string();
                for row in reader {
                    if sink.control.stopped() {
                        break;
                    }
                    let row = row?;
                    match &row.event {
                        Ok(raw) => {
                            let mut value = Vec::with_capacity(256);
                            raw_event_json(raw, &mut value);
                            let key = match &raw.user_session {
                                Some(cartflow_core::Scalar::Str(s)) => Some(s.as_ref()),
                                _ => None,
                            };
                            sink.send(key, value, &[])?;
                        }
                        Err(why) => {
                            tracing::warn!(file = %name, line = row.line, "broken row sent on as invalid: {why}");
                            sink.stats.broken_rows += 1;
                            let location = format!("{name}:{}", row.line);
                            let headers: [(&str, &[u8]); 2] =
                                [(CONTENT_TYPE, CSV_CONTENT_TYPE), (SOURCE_LOCATION, location.as_bytes())];
                            sink.send(None, row.text.into_bytes(), &headers)?;
                        }
                    }
                }
            }
        }
    }
    sink.flush()?;
    Ok(sink.stats)
}

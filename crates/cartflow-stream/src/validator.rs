//! The validator: reads `tracking.raw_user_behavior` and the CDC topic, writes
//! each record's normalized event to `validated` or its original bytes, with
//! the reason in headers, to `invalid` — exactly once (see `exactly_once`),
//! committing its input offsets only after its outputs are durable.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cartflow_core::{ChangeOp, Event, Invalid, RawEvent, Rules, parse_message, validate};
use cartflow_log::{CommittedOffset, EventLog, ProducerRecord, Rebalance, Record};
use serde::{Deserialize, Serialize};

use crate::alerts::{AlertConfig, Alerter};
use crate::driver::{Stage, Subscription};
use crate::exactly_once::{ExactlyOnce, source_position};
use crate::metrics::{DUPLICATES_SKIPPED, EVENT_AGE, EVENTS_OUT, INVALID as INVALID_METRIC};
use crate::supervise::{Waiting, failed, supervise};
use crate::topics::*;
use crate::{Result, StageControl};

/// One valid event in this many is timed for [`EVENT_AGE`].
const EVENT_AGE_SAMPLE: u64 = 16;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidatorConfig {
    /// Consumer group; validators of one group share the input partitions.
    pub group: String,
    /// Records per batch (one durable flush and one commit per batch).
    pub batch_size: usize,
    /// How far in the future an event time may be (clock skew), in seconds.
    pub max_future_secs: u64,
    /// Events before this time are rejected.
    pub min_event_time: String,
    /// Longest accepted string field, in bytes.
    pub max_string_len: usize,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            group: "cartflow-validator".into(),
            batch_size: 16_384,
            max_future_secs: 3600,
            min_event_time: "2000-01-01T00:00:00Z".into(),
            max_string_len: 256,
        }
    }
}

impl ValidatorConfig {
    /// The rules as of `now`.
    pub fn rules(&self, now: SystemTime) -> Result<Rules> {
        let min = cartflow_core::time::parse_timestamp(&self.min_event_time).ok_or_else(|| {
            crate::StageError::Config(format!("validator.min_event_time {:?} is not a time", self.min_event_time))
        })?;
        let now_us = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as i64;
        Ok(Rules {
            min_event_time: min,
            max_event_time: now_us + self.max_future_secs as i64 * 1_000_000,
            max_string_len: self.max_string_len,
        })
    }
}

/// What the validator makes of one record.
#[derive(Debug)]
pub enum Outcome {
    Valid(Event, Option<ChangeOp>),
    Invalid(Invalid),
    /// An empty value: a Kafka tombstone (Debezium sends one after each delete). Not an event.
    Tombstone,
}

/// Validates one record's bytes: JSON (plain, Kafka-Connect or Debezium) or,
/// with `content-type: text/csv`, a CSV line.
pub fn check_record(value: &[u8], csv: bool, rules: &Rules) -> Outcome {
    if value.is_empty() {
        return Outcome::Tombstone;
    }
    let parsed = if csv {
        RawEvent::from_csv_line(value).map(|e| (e, None))
    } else {
        parse_message(value).map(|m| (m.event, m.op))
    };
    match parsed.and_then(|(raw, op)| validate(&raw, rules).map(|e| (e, op))) {
        Ok((event, op)) => Outcome::Valid(event, op),
        Err(inv) => Outcome::Invalid(inv),
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ValidatorStats {
    pub read: u64,
    pub valid: u64,
    pub invalid: u64,
    /// Replayed inputs (after a crash) whose output was already durable.
    pub replayed_skipped: u64,
    pub tombstones: u64,
    pub by_reason: BTreeMap<&'static str, u64>,
    /// Records behind the end of the inputs at the last check.
    pub lag: u64,
    /// Set while the stage waits for a backing service to come back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

impl Waiting for ValidatorStats {
    fn set_waiting(&mut self, why: Option<String>) {
        self.waiting = why;
    }
}

pub fn run_validator(
    log: &dyn EventLog,
    cfg: &ValidatorConfig,
    alerts: Option<AlertConfig>,
    control: &StageControl,
    progress: &mut dyn FnMut(&ValidatorStats),
) -> Result<ValidatorStats> {
    // Subscribing creates missing topics with the default partitions: the CDC
    // topic must be made with its own shape first.
    log.ensure_topic(CDC, CDC_PARTITIONS)?;
    // At zero from the start, so `rate` sees the first replay after a crash.
    metrics::counter!(DUPLICATES_SKIPPED, "stage" => "validate").increment(0);
    supervise(Validator::NAME, control, progress, |stats, progress| {
        let producer = log.producer().map_err(|e| failed(e, stats.clone()))?;
        let mut stage = Validator {
            cfg,
            exactly_once: ExactlyOnce::default(),
            producer,
            alerter: alerts.clone().map(|a| Alerter::new(a, "validate")),
            stats,
            dirty: false,
            unreported: (0, 0),
            event_times: Vec::new(),
        };
        let mut input = Subscription::join(log, &cfg.group, &[RAW, CDC]).map_err(|e| failed(e, stage.stats.clone()))?;
        crate::driver::drive(&mut input, &mut stage, control, progress).map_err(|e| failed(e, stage.stats.clone()))
    })
}

/// The validator as a stage: each batch validated on all cores, written in
/// input order, flushed and committed before the next.
struct Validator<'a> {
    cfg: &'a ValidatorConfig,
    exactly_once: ExactlyOnce,
    producer: Box<dyn cartflow_log::Producer>,
    alerter: Option<Alerter>,
    stats: ValidatorStats,
    /// A batch was taken and not yet flushed and committed.
    dirty: bool,
    /// (records, invalid) written since the alerter last looked.
    unreported: (u64, u64),
    /// Event times of sampled valid events not yet flushed, for [`EVENT_AGE`].
    event_times: Vec<i64>,
}

impl<'a> Stage for Validator<'a> {
    type Input = Subscription<'a>;
    type Stats = ValidatorStats;
    const NAME: &'static str = "validate";

    fn batch_size(&self) -> usize {
        self.cfg.batch_size
    }

    fn poll_wait(&self) -> Duration {
        Duration::from_millis(100)
    }

    /// Partitions another validator held may have outputs it made durable but
    /// never committed: find them before reading on (at start, after rebalances).
    fn assigned(&mut self, input: &mut Subscription<'a>, _: Option<&Rebalance>) -> Result<()> {
        self.exactly_once = ExactlyOnce::recover(input.log, input.consumer.as_mut(), &[VALIDATED, INVALID])?;
        Ok(())
    }

    fn process(&mut self, batch: Vec<Record>, _: &Subscription<'a>) -> Result<()> {
        let rules = self.cfg.rules(SystemTime::now())?;
        let s = &mut self.stats;
        let (valid_before, invalid_before, replayed_before) = (s.valid, s.invalid, s.replayed_skipped);
        let replayed: Vec<bool> = batch.iter().map(|r| self.exactly_once.already_written(r)).collect();
        let checked = check_batch(&batch, &replayed, &rules);
        s.read += batch.len() as u64;
        for (record, outcome) in batch.iter().zip(checked) {
            match outcome {
                Checked::Replayed => s.replayed_skipped += 1,
                Checked::Valid { json, key, op, time } => {
                    write_valid(self.producer.as_mut(), record, &json, &key, op)?;
                    if s.valid.is_multiple_of(EVENT_AGE_SAMPLE) {
                        self.event_times.push(time);
                    }
                    s.valid += 1;
                }
                Checked::Invalid(why) => {
                    write_invalid(self.producer.as_mut(), record, &why)?;
                    s.invalid += 1;
                    *s.by_reason.entry(why.reason.as_str()).or_default() += 1;
                    metrics::counter!(INVALID_METRIC, "reason" => why.reason.as_str(), "field" => why.field.to_string())
                        .increment(1);
                }
                Checked::Tombstone => s.tombstones += 1,
            }
        }
        let (valid, invalid) = (s.valid - valid_before, s.invalid - invalid_before);
        count_out(valid, invalid, s.replayed_skipped - replayed_before);
        self.unreported.0 += valid + invalid;
        self.unreported.1 += invalid;
        self.dirty = true;
        Ok(())
    }

    /// Every batch is flushed and committed before the next is read.
    fn due(&self, _: bool) -> bool {
        self.dirty
    }

    fn write(&mut self, input: &Subscription<'a>) -> Result<Vec<CommittedOffset>> {
        let ends = self.producer.flush()?;
        self.exactly_once.flushed(&ends);
        let now = cartflow_core::time::now_micros();
        let age = metrics::histogram!(EVENT_AGE);
        for t in self.event_times.drain(..) {
            age.record((now - t).max(0) as f64 / 1e6);
        }
        self.dirty = false;
        Ok(self.exactly_once.offsets(input))
    }

    fn tick(&mut self, _: bool) -> Result<()> {
        if let Some(a) = self.alerter.as_mut()
            && self.unreported.0 > 0
        {
            a.observe(cartflow_core::time::now_micros() / 1000, self.unreported.0, self.unreported.1);
        }
        self.unreported = (0, 0);
        Ok(())
    }

    fn stats(&mut self, lag: u64) -> &ValidatorStats {
        self.stats.lag = lag;
        &self.stats
    }

    fn outputs(&self) -> u64 {
        self.stats.valid + self.stats.invalid
    }
}

/// A record's outcome with its normalized JSON already made.
enum Checked {
    /// Its output is already durable (a replay after a crash).
    Replayed,
    Valid {
        json: Vec<u8>,
        /// [`cartflow_core::Event::partition_key`].
        key: String,
        op: Option<ChangeOp>,
        /// The event's `event_time` (µs).
        time: i64,
    },
    Invalid(Invalid),
    Tombstone,
}

/// Validates and serializes a batch on all cores: this is most of the
/// validator's CPU, while writing must stay in input order on one thread.
fn check_batch(batch: &[Record], replayed: &[bool], rules: &Rules) -> Vec<Checked> {
    let check = |r: &Record, replayed: bool| {
        if replayed {
            return Checked::Replayed;
        }
        let csv = r.header(CONTENT_TYPE) == Some(CSV_CONTENT_TYPE);
        match check_record(&r.value, csv, rules) {
            Outcome::Valid(event, op) => Checked::Valid {
                json: event.to_json(),
                key: event.partition_key().into_owned(),
                op,
                time: event.event_time,
            },
            Outcome::Invalid(why) => Checked::Invalid(why),
            Outcome::Tombstone => Checked::Tombstone,
        }
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if workers == 1 || batch.len() < 4096 {
        return batch.iter().zip(replayed).map(|(r, skip)| check(r, *skip)).collect();
    }
    let chunk = batch.len().div_ceil(workers);
    std::thread::scope(|s| {
        let parts: Vec<_> = batch
            .chunks(chunk)
            .zip(replayed.chunks(chunk))
            .map(|(records, skips)| {
                s.spawn(move || records.iter().zip(skips).map(|(r, skip)| check(r, *skip)).collect::<Vec<_>>())
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().expect("validator worker")).collect()
    })
}

fn write_valid(
    producer: &mut dyn cartflow_log::Producer,
    record: &Record,
    json: &[u8],
    key: &str,
    op: Option<ChangeOp>,
) -> Result<()> {
    let src = source_position(record);
    // The source position always; the change's operation for CDC; the trace
    // context of a traced record, which the driver set to this stage's span.
    let mut headers: [(&str, &[u8]); 3] = [(SOURCE_POSITION, src.as_bytes()), ("", b""), ("", b"")];
    let mut n = 1;
    if let Some(op) = op {
        headers[n] = (CHANGE_OP, op.code().as_bytes());
        n += 1;
    }
    if let Some(traceparent) = record.header(cartflow_trace::TRACEPARENT) {
        headers[n] = (cartflow_trace::TRACEPARENT, traceparent);
        n += 1;
    }
    // The raw record's time stays on its output (as Kafka Streams keeps an
    // input's timestamp): when the event entered cartflow, for freshness.
    let out = ProducerRecord::new(VALIDATED, Some(key.as_bytes()), json)
        .headers(&headers[..n])
        .timestamp(record.timestamp_ms);
    producer.send(out)?;
    Ok(())
}

fn write_invalid(producer: &mut dyn cartflow_log::Producer, record: &Record, why: &Invalid) -> Result<()> {
    let src = source_position(record);
    let mut headers: Vec<(&str, &[u8])> = record.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    headers.push((SOURCE_POSITION, src.as_bytes()));
    headers.push((ERROR_REASON, why.reason.as_str().as_bytes()));
    headers.push((ERROR_FIELD, why.field.as_bytes()));
    headers.push((ERROR_MESSAGE, why.message.as_bytes()));
    let out = ProducerRecord::new(INVALID, record.key.as_deref(), &record.value).headers(&headers);
    producer.send(out.timestamp(record.timestamp_ms))?;
    Ok(())
}

fn count_out(valid: u64, invalid: u64, replayed: u64) {
    metrics::counter!(EVENTS_OUT, "stage" => "validate", "topic" => VALIDATED).increment(valid);
    metrics::counter!(EVENTS_OUT, "stage" => "validate", "topic" => INVALID).increment(invalid);
    if replayed > 0 {
        metrics::counter!(DUPLICATES_SKIPPED, "stage" => "validate").increment(replayed);
    }
}

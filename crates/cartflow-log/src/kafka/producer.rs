//! An idempotent producer that knows, after a flush, how far each partition it
//! wrote to now ends (the stages' exactly-once watermarks need it).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use super::backend;
use crate::{LogError, Producer, ProducerRecord, Result, TopicPartition};

/// A flush waits this long for the broker to acknowledge everything.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// Delivery reports, gathered on the thread that polls or flushes.
#[derive(Default)]
struct Deliveries(Mutex<Delivered>);

#[derive(Default)]
struct Delivered {
    /// Next offset after the last acknowledged record, per partition.
    ends: HashMap<(String, i32), u64>,
    /// The first failure since the last flush.
    failure: Option<String>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut d = self.0.lock().expect("delivery state");
        match result {
            // An idempotent producer's retry of what the broker already kept
            // (after a broker restart) is delivered with no offset (-1).
            Ok(m) if m.offset() < 0 => {}
            Ok(m) => {
                let end = m.offset() as u64 + 1;
                let e = d.ends.entry((m.topic().to_owned(), m.partition())).or_default();
                *e = (*e).max(end);
            }
            Err((e, m)) => {
                if d.failure.is_none() {
                    d.failure = Some(format!("{}[{}]: {e}", m.topic(), m.partition()));
                }
            }
        }
    }
}

/// Creates a topic with the log's defaults (as the embedded log does on a first write).
pub(super) type EnsureTopic = Box<dyn Fn(&str) -> Result<()> + Send>;

pub struct KafkaProducer {
    producer: BaseProducer<Deliveries>,
    sent: u64,
    ensure_topic: EnsureTopic,
    known_topics: HashSet<String>,
}

impl KafkaProducer {
    pub(super) fn new(mut config: ClientConfig, ensure_topic: EnsureTopic) -> Result<Self> {
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // The Java client's partitioner, as the embedded log uses: a key
            // lands in the same partition number on both backends.
            .set("partitioner", "murmur2_random");
        // A default only: a user's `properties` win.
        if config.get("linger.ms").is_none() {
            config.set("linger.ms", "5");
        }
        let producer =
            config.create_with_context(Deliveries::default()).map_err(|e| backend("creating a producer", e))?;
        Ok(KafkaProducer { producer, sent: 0, ensure_topic, known_topics: HashSet::new() })
    }
}

impl Producer for KafkaProducer {
    fn send(&mut self, r: ProducerRecord<'_>) -> Result<()> {
        if !self.known_topics.contains(r.topic) {
            (self.ensure_topic)(r.topic)?;
            self.known_topics.insert(r.topic.to_owned());
        }
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for &(key, value) in r.headers {
            headers = headers.insert(Header { key, value: Some(value) });
        }
        let timestamp = r.timestamp_ms.unwrap_or_else(crate::now_ms);
        let mut record = BaseRecord::to(r.topic).payload(r.value).headers(headers).timestamp(timestamp);
        if let Some(key) = r.key {
            record = record.key(key);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                // The local queue is full: let deliveries drain it.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(backend(&format!("producing to {}", r.topic), e)),
            }
        }
        self.sent += 1;
        if self.sent.is_multiple_of(4096) {
            self.producer.poll(Duration::ZERO);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Vec<(TopicPartition, u64)>> {
        // Not `BaseProducer::flush`: it serves delivery reports with a
        // `poll(100 ms)` that always waits its whole timeout, so every flush
        // took at least 100 ms and the validator's batches ran at ~50k
        // records/s on an idle broker. A zero-timeout flush sends what
        // lingers at once; then serve reports in 1 ms steps until none is
        // outstanding (`in_flight_count` counts unserved reports too).
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        match self.producer.flush(Duration::ZERO) {
            Ok(()) | Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {}
            Err(e) => return Err(backend("flushing the producer", e)),
        }
        while self.producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                let timed_out = KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut);
                return Err(backend("flushing the producer", timed_out));
            }
            self.producer.poll(Duration::from_millis(1));
        }
        let mut d = self.producer.context().0.lock().expect("delivery state");
        if let Some(failure) = d.failure.take() {
            return Err(LogError::Backend(format!("kafka: a record was not delivered: {failure}")));
        }
        Ok(d.ends.iter().map(|((t, p), end)| (TopicPartition::new(t, *p as u32), *end)).collect())
    }
}

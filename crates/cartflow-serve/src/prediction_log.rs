//! The prediction log: each `/predict` answer (the cart, the model, the
//! inputs it scored, the probability and the decision) as a JSON record on
//! `tracking.predictions`, keyed by session, so that what shoppers do next
//! can be joined to it. Written off the request path: a request hands its
//! predictions to a bounded queue and goes on; a thread of its own encodes
//! them and writes them in batches. When the queue is full (the log is away
//! or slower than the requests), predictions are dropped and counted, never
//! waited for: serving comes first.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use serde::Serialize;

pub const LOGGED: &str = "cartflow_prediction_log_records_total";
pub const DROPPED: &str = "cartflow_prediction_log_dropped_total";

/// Predictions waiting to be written; past this, new ones are dropped.
const QUEUE: usize = 65_536;
/// A batch is written when it has this many records, or when the oldest has
/// waited [`LINGER`].
const BATCH: usize = 4096;
const LINGER: Duration = Duration::from_millis(50);

/// The records' shape is the monitor's, which reads them.
pub use cartflow_monitor::record::{LoggedPrediction, ModelVersion, TOPIC};

/// What a request hands over, as it has it: encoded on the writer's thread.
pub struct Answered {
    pub request_id: String,
    pub time: i64,
    pub model: Arc<ModelVersion>,
    pub input_names: Arc<[String]>,
    pub carts: Vec<AnsweredCart>,
    /// The carts' inputs, row after row (`input_names` to a row).
    pub inputs: Vec<f64>,
}

pub struct AnsweredCart {
    pub user_id: i64,
    pub product_id: i64,
    pub user_session: Option<String>,
    pub event_time: i64,
    pub probability: f64,
    pub will_purchase: bool,
}

/// A [`LoggedPrediction`] borrowed from an [`Answered`], for encoding
/// without copying names and ids into a tree first.
#[derive(Serialize)]
struct Encoded<'a> {
    request_id: &'a str,
    time: i64,
    model: &'a ModelVersion,
    user_id: i64,
    product_id: i64,
    user_session: Option<&'a str>,
    event_time: i64,
    inputs: Inputs<'a>,
    probability: f64,
    will_purchase: bool,
}

/// Names and values as one JSON object; a missing value (NaN) is `null`.
struct Inputs<'a>(&'a [String], &'a [f64]);

impl Serialize for Inputs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, &v) in self.0.iter().zip(self.1) {
            map.serialize_entry(name, &Some(v).filter(|v| v.is_finite()))?;
        }
        map.end()
    }
}

/// Where batches of (key, JSON value) records go: the configured event log's
/// producer, behind this so that serving needs no log backend.
pub trait PredictionWriter: Send + 'static {
    /// Writes the records durably (as the log's producer flushes), in order.
    fn write(&mut self, records: &[(String, Vec<u8>)]) -> Result<(), String>;
}

/// The request side of the log.
pub struct PredictionLog {
    queue: SyncSender<Answered>,
    /// Share (0–1) of sessions whose predictions are logged.
    sample: f64,
}

impl PredictionLog {
    /// Starts the writer thread. `sample` is the share of sessions logged: a
    /// session's predictions are all logged or none, so that its outcome
    /// can be joined to every one of them.
    pub fn start(writer: Box<dyn PredictionWriter>, sample: f64) -> std::io::Result<PredictionLog> {
        let (queue, queued) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new().name("prediction-log".into()).spawn(move || write_batches(queued, writer))?;
        Ok(PredictionLog { queue, sample: sample.clamp(0.0, 1.0) })
    }

    /// Whether predictions for `session` are logged.
    pub fn samples(&self, session: &str) -> bool {
        self.sample >= 1.0 || (self.sample > 0.0 && session_share(session) < self.sample)
    }

    /// Hands a request's predictions to the writer; drops them (counted)
    /// when it is behind.
    pub fn offer(&self, answered: Answered) {
        let n = answered.carts.len() as u64;
        if n == 0 {
            return;
        }
        match self.queue.try_send(answered) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                metrics::counter!(DROPPED).increment(n);
            }
        }
    }
}

/// Where `session` falls in [0, 1): FNV-1a, then MurmurHash3's finalizer
/// (FNV alone leaves similar ids bunched in the high bits), the same in
/// every process and release (std's hasher is seeded per process).
fn session_share(session: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in session.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Answered {
    /// The records of this request, each keyed by its session.
    fn records(&self) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
        let width = self.input_names.len();
        self.carts.iter().enumerate().map(move |(i, c)| {
            let encoded = Encoded {
                request_id: &self.request_id,
                time: self.time,
                model: &self.model,
                user_id: c.user_id,
                product_id: c.product_id,
                user_session: c.user_session.as_deref(),
                event_time: c.event_time,
                inputs: Inputs(&self.input_names, self.inputs.get(i * width..(i + 1) * width).unwrap_or_default()),
                probability: c.probability,
                will_purchase: c.will_purchase,
            };
            let key = c.user_session.clone().unwrap_or_default();
            (key, serde_json::to_vec(&encoded).expect("a prediction serializes"))
        })
    }
}

/// An id for a request that brought none: this process's random prefix and
/// a count, unique across replicas without a random draw per request.
pub fn new_request_id() -> String {
    use std::hash::BuildHasher;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // std's hasher keys are drawn from the OS once per process.
    let prefix = PREFIX.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(std::process::id()));
    format!("{prefix:016x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn write_batches(queued: Receiver<Answered>, mut writer: Box<dyn PredictionWriter>) {
    let mut batch: Vec<(String, Vec<u8>)> = Vec::with_capacity(BATCH);
    let mut oldest: Option<Instant> = None;
    let mut failing = false;
    loop {
        let wait = oldest.map_or(Duration::from_secs(3600), |t| LINGER.saturating_sub(t.elapsed()));
        let closed = match queued.recv_timeout(wait) {
            Ok(answered) => {
                batch.extend(answered.records());
                oldest.get_or_insert_with(Instant::now);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let due = oldest.is_some_and(|t| t.elapsed() >= LINGER);
        if !batch.is_empty() && (batch.len() >= BATCH || due || closed) {
            let n = batch.len() as u64;
            match writer.write(&batch) {
                Ok(()) => {
                    metrics::counter!(LOGGED).increment(n);
                    if std::mem::take(&mut failing) {
                        tracing::info!("the prediction log writes again");
                    }
                }
                Err(e) => {
                    // Said once per outage; the drops are counted throughout.
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!("the prediction log drops predictions until it can write again: {e}");
                    }
                    metrics::counter!(DROPPED).increment(n);
                }
            }
            batch.clear();
            oldest = None;
        }
        if closed {
            return;
        }
    }
}

pub fn describe_metrics() {
    metrics::describe_counter!(LOGGED, "Predictions written to the prediction log (tracking.predictions).");
    metrics::describe_counter!(
        DROPPED,
        "Predictions not logged: the queue was full or the log failed (serving never waits for it)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_a_logged_prediction() {
        let answered = Answered {
            request_id: new_request_id(),
            time: 1_000,
            model: Arc::new(ModelVersion { name: "m".into(), version: "3".into(), alias: "champion".into() }),
            input_names: vec!["price".to_owned(), "views".to_owned()].into(),
            carts: (0..2)
                .map(|i| AnsweredCart {
                    user_id: i,
                    product_id: 10 + i,
                    user_session: (i == 0).then(|| "s".to_owned()),
                    event_time: 900,
                    probability: 0.25,
                    will_purchase: false,
                })
                .collect(),
            inputs: vec![9.5, 2.0, f64::NAN, 3.0],
        };
        let records: Vec<(String, Vec<u8>)> = answered.records().collect();
        assert_eq!((records[0].0.as_str(), records[1].0.as_str()), ("s", ""));
        let second: LoggedPrediction = serde_json::from_slice(&records[1].1).unwrap();
        assert_eq!(second.request_id, answered.request_id);
        assert_eq!((second.user_id, second.product_id, second.user_session), (1, 11, None));
        assert_eq!(serde_json::Value::Object(second.inputs), serde_json::json!({ "price": null, "views": 3.0 }));
        assert_ne!(new_request_id(), new_request_id());
    }

    #[test]
    fn a_session_is_sampled_alike_everywhere_and_about_the_share_asked() {
        let log = log_with(0.25);
        let sampled = (0..20_000).filter(|i| log.samples(&format!("session-{i}"))).count();
        assert!((4_500..5_500).contains(&sampled), "{sampled} of 20,000 at 0.25");
        // The same share in every process and release (pinned).
        assert_eq!(session_share("session-7"), 0.8447991997907893);
        assert!((0..100).all(|i| log_with(1.0).samples(&i.to_string())));
        assert!((0..100).all(|i| !log_with(0.0).samples(&i.to_string())));
    }

    fn log_with(sample: f64) -> PredictionLog {
        PredictionLog { queue: std::sync::mpsc::sync_channel(1).0, sample }
    }
}

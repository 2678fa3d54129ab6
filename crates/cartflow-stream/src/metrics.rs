//! Metric names every stage shares, in the spirit of Vector's component
//! spec: what came in, what went out, what was rejected and why.

pub const EVENTS_IN: &str = "cartflow_events_in_total";
pub const EVENTS_OUT: &str = "cartflow_events_out_total";
pub const INVALID: &str = "cartflow_invalid_events_total";
pub const DUPLICATES_SKIPPED: &str = "cartflow_replayed_records_skipped_total";
pub const CONSUMER_LAG: &str = "cartflow_consumer_lag_records";
pub const BATCH_SECONDS: &str = "cartflow_batch_duration_seconds";
/// Seconds from a record entering cartflow (its produce or capture time,
/// which the validator keeps on its outputs) to a stage's output of it being
/// durable: for the feature streamer, produce → visible in the online store.
pub const FRESHNESS: &str = "cartflow_freshness_seconds";
/// Buckets for [`FRESHNESS`]: a stage's batches take milliseconds, a backlog minutes.
pub const FRESHNESS_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Seconds from an event's own time (`event_time`, set by the shop) to the
/// validator's output of it being durable: event time → validated. Only
/// meaningful for live events (replayed history is years old).
pub const EVENT_AGE: &str = "cartflow_event_age_seconds";
pub const INVALID_RATE: &str = "cartflow_invalid_rate";
pub const ALERT_FIRING: &str = "cartflow_alert_firing";
pub const ALERT_NOTIFICATIONS: &str = "cartflow_alert_notifications_total";
/// 1 while a stage runs in the process (0 after a clean stop; the series goes
/// stale when the process dies): what alerts watch instead of a scrape job's name.
pub const STAGE_RUNNING: &str = "cartflow_stage_running";
/// Times a stage started again after a backing service (broker, object
/// store, Redis, disk) failed under it.
pub const STAGE_RESTARTS: &str = "cartflow_stage_restarts_total";
/// 1 while a stage waits to start again after such a failure.
pub const STAGE_WAITING: &str = "cartflow_stage_waiting";
/// WAL a CDC capture's replication slot keeps from being recycled: what
/// fills PostgreSQL's disk when a capture stops and its slot stays.
pub const CDC_SLOT_RETAINED: &str = "cartflow_cdc_slot_retained_wal_bytes";

/// Registers descriptions so `/metrics` explains itself.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(EVENTS_IN, "Records a stage read, by stage and topic.");
    describe_counter!(EVENTS_OUT, "Records a stage wrote, by stage and topic.");
    describe_counter!(INVALID, "Records the validator rejected, by reason and field.");
    describe_counter!(DUPLICATES_SKIPPED, "Replayed input records whose output was already durable (after a crash).");
    describe_gauge!(
        CONSUMER_LAG,
        "Records between a stage's position and the end of its input, by topic and partition."
    );
    describe_histogram!(BATCH_SECONDS, "Time to process and durably write one batch, by stage.");
    describe_histogram!(
        FRESHNESS,
        "Seconds from a record entering cartflow (produce or capture) to its output being durable, by stage (one record in 16)."
    );
    describe_histogram!(
        EVENT_AGE,
        "Seconds from a valid event's event_time to the validator's output of it being durable (one in 16)."
    );
    describe_gauge!(INVALID_RATE, "Share of invalid records over the alert window.");
    describe_gauge!(ALERT_FIRING, "1 while the named alert fires.");
    describe_counter!(ALERT_NOTIFICATIONS, "Webhook notifications, by status and outcome.");
    describe_gauge!(STAGE_RUNNING, "1 while the named stage runs in this process.");
    describe_counter!(STAGE_RESTARTS, "Times the stage started again after a backing service or the disk failed.");
    describe_gauge!(STAGE_WAITING, "1 while the stage waits to start again after a backing service failed.");
    describe_gauge!(CDC_SLOT_RETAINED, "WAL bytes the CDC capture's replication slot retains, by slot.");
    describe_counter!(
        crate::feature_streamer::STREAMER_DUPLICATES,
        "Exact duplicate events the feature streamer counted once (all nine fields equal)."
    );
    describe_counter!(
        crate::feature_streamer::STREAMER_EXPIRED,
        "Sessions the feature streamer let go after the session TTL without events."
    );
}

/// Marks a stage as running for as long as it lives.
pub struct Running(&'static str);

impl Running {
    pub fn start(stage: &'static str) -> Self {
        metrics::gauge!(STAGE_RUNNING, "stage" => stage).set(1.0);
        Running(stage)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        metrics::gauge!(STAGE_RUNNING, "stage" => self.0).set(0.0);
    }
}

/// Records between a consumer's positions and its inputs' ends, summed;
/// sets the lag gauge of each partition.
pub(crate) fn measure_lag(stage: &'static str, consumer: &mut dyn cartflow_log::Consumer) -> crate::Result<u64> {
    let mut total = 0;
    for (tp, end) in consumer.end_offsets()? {
        let lag = end.saturating_sub(consumer.position(&tp).unwrap_or(end));
        metrics::gauge!(CONSUMER_LAG, "stage" => stage, "topic" => tp.topic.to_string(), "partition" => tp.partition.to_string())
            .set(lag as f64);
        total += lag;
    }
    Ok(total)
}

//! The `EventLog` conformance suite on both backends.

use cartflow_log::{EmbeddedLog, EmbeddedOptions};
use cartflow_testkit::conformance::{Keeps, event_log_suite};
use cartflow_testkit::{KafkaBroker, needs};

#[test]
fn the_embedded_log_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), EmbeddedOptions::default()).unwrap();
    event_log_suite(&log, "conformance", Keeps { commit_metadata: true, exact_ends: true });
}

#[test]
fn kafka_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let broker = needs!(KafkaBroker::start(dir.path()));
    // nisshi 0.7 drops commit metadata (its OffsetFetch answers offsets only:
    // nisshi-storage-dynostore's `offset_fetch`) and reports a partition's end
    // by its last batch; Apache Kafka does neither.
    event_log_suite(&broker.log(), "conformance", Keeps { commit_metadata: false, exact_ends: false });
}

//! The `EventLog` conformance suite on both backends.

use cartflow_log::{EmbeddedLog, EmbeddedOptions};
use cartflow_testkit::conformance::event_log_suite;
use cartflow_testkit::{KafkaBroker, needs};

#[test]
fn the_embedded_log_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), EmbeddedOptions::default()).unwrap();
    event_log_suite(&log, "conformance");
}

#[test]
fn kafka_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let broker = needs!(KafkaBroker::start(dir.path()));
    event_log_suite(&broker.log(), "conformance");
}

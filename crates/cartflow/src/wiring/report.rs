//! The summaries more than one command prints, in the words a person reads.

use cartflow_stream::lake_sink::LakeSinkStats;
use cartflow_stream::topics::{INVALID, VALIDATED};
use cartflow_stream::validator::ValidatorStats;

use crate::commands::per_sec;
use crate::telemetry::thousands;

/// What the validator did, with the reasons under it.
pub fn validated(s: &ValidatorStats, secs: f64) {
    let out = s.valid + s.invalid;
    println!(
        "validated {} records in {secs:.2} s ({} records/s): {} to {VALIDATED}, {} to {INVALID} ({:.2}%)",
        thousands(s.read),
        thousands(per_sec(s.read, secs) as u64),
        thousands(s.valid),
        thousands(s.invalid),
        100.0 * s.invalid as f64 / out.max(1) as f64
    );
    validator_details(s, "  ");
}

/// The lines under a validator summary: reasons, replays, tombstones.
pub fn validator_details(s: &ValidatorStats, indent: &str) {
    if !s.by_reason.is_empty() {
        let reasons: Vec<String> = s.by_reason.iter().map(|(r, n)| format!("{r} {}", thousands(*n))).collect();
        println!("{indent}invalid by reason: {}", reasons.join(", "));
    }
    if s.replayed_skipped > 0 {
        println!(
            "{indent}{} replayed records skipped: their output was already durable",
            thousands(s.replayed_skipped)
        );
    }
    if s.tombstones > 0 {
        println!("{indent}{} tombstones (empty values) passed over", thousands(s.tombstones));
    }
}

/// What the lake sink landed and where.
pub fn landed(s: &LakeSinkStats, location: &str, secs: f64, indent: &str) {
    println!(
        "{indent}landed {} events and {} invalid records in {} Parquet files ({} commits) under {location} in {secs:.2} s ({} records/s)",
        thousands(s.events),
        thousands(s.invalid),
        thousands(s.files),
        s.commits,
        thousands(per_sec(s.events + s.invalid, secs) as u64)
    );
    if s.repaired_files > 0 {
        println!("{indent}  repaired {} files of a commit a crash had interrupted", s.repaired_files);
    }
}

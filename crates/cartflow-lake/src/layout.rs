//! Where things go in the lake.

use cartflow_core::time::{Micros, civil_hour};

/// Validated events, by event hour.
pub const EVENTS: &str = "events";
/// Invalid records, by the hour they arrived.
pub const INVALID: &str = "invalid";
/// Manifests, one folder per writer.
pub const MANIFESTS: &str = "_manifests";

/// `year=YYYY/month=MM/day=DD/hour=HH` of a time.
pub fn hour_partition(t: Micros) -> String {
    let (y, m, d, h) = civil_hour(t);
    format!("year={y:04}/month={m:02}/day={d:02}/hour={h:02}")
}

/// `<table>/<hour partition>/<topic>+<partition>+<start offset>.parquet`:
/// one file per table, hour and commit, named as Kafka Connect's S3 sink
/// names its files (by input partition and first offset), so writers of
/// different partitions never pick the same name.
pub fn data_file(table: &str, hour: &str, topic: &str, partition: u32, start: u64) -> String {
    format!("{table}/{hour}/{topic}+{partition}+{start:020}.parquet")
}

/// The lake sink's name as a writer of manifests.
pub const SINK_WRITER: &str = "lake-sink";

/// Every manifest of a writer is under this folder.
pub fn writer_dir(writer: &str) -> String {
    format!("{MANIFESTS}/{writer}")
}

/// The manifests of one input partition: `_manifests/<writer>/<topic>+<partition>`.
pub fn manifest_dir(writer: &str, topic: &str, partition: u32) -> String {
    format!("{MANIFESTS}/{writer}/{topic}+{partition}")
}

/// A commit's manifest, named by its first offset (zero-padded, so names sort as offsets).
pub fn manifest_file(writer: &str, topic: &str, partition: u32, start: u64) -> String {
    format!("{}/{start:020}.json", manifest_dir(writer, topic, partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = cartflow_core::time::parse_timestamp("2019-10-01 02:59:59 UTC").unwrap();
        assert_eq!(hour_partition(t), "year=2019/month=10/day=01/hour=02");
        assert_eq!(
            data_file(EVENTS, "year=2019/month=10/day=01/hour=02", "v", 3, 7),
            "events/year=2019/month=10/day=01/hour=02/v+3+00000000000000000007.parquet"
        );
        assert_eq!(manifest_file("lake-sink", "v", 3, 7), "_manifests/lake-sink/v+3/00000000000000000007.json");
    }
}

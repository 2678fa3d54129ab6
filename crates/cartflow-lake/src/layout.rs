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

/// `<table>/<hour partition>/part-<seq>.parquet`: one file per table, hour and commit.
pub fn data_file(table: &str, hour: &str, seq: u64) -> String {
    format!("{table}/{hour}/part-{seq:012}.parquet")
}

/// The lake sink's name as a writer of manifests.
pub const SINK_WRITER: &str = "lake-sink";

pub fn manifest_dir(writer: &str) -> String {
    format!("{MANIFESTS}/{writer}")
}

pub fn manifest_file(writer: &str, seq: u64) -> String {
    format!("{MANIFESTS}/{writer}/{seq:012}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = cartflow_core::time::parse_timestamp("2019-10-01 02:59:59 UTC").unwrap();
        assert_eq!(hour_partition(t), "year=2019/month=10/day=01/hour=02");
        assert_eq!(
            data_file(EVENTS, "year=2019/month=10/day=01/hour=02", 7),
            "events/year=2019/month=10/day=01/hour=02/part-000000000007.parquet"
        );
        assert_eq!(manifest_file("lake-sink", 3), "_manifests/lake-sink/000000000003.json");
    }
}

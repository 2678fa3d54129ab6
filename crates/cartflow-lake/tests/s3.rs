//! The per-partition commit on a real S3 server (s3s-fs): a manifest is
//! created only if absent (`If-None-Match: *`), so a writer that lost its
//! partition cannot commit over the new owner's range.

use std::collections::BTreeMap;

use bytes::Bytes;
use cartflow_lake::layout::{EVENTS, data_file};
use cartflow_lake::{Lake, LakeError, PendingFile};
use cartflow_testkit::{S3Server, needs};

#[test]
fn a_range_is_committed_once_on_s3() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = needs!(S3Server::start(dir.path(), "lake-test"));
    // This test binary's only test: object_store reads the usual variables.
    let mut cmd = std::process::Command::new("true");
    s3.configure(&mut cmd);
    for (k, v) in cmd.get_envs() {
        // SAFETY: set before any thread of this process reads the environment.
        unsafe { std::env::set_var(k, v.unwrap()) };
    }
    let lake = Lake::open("s3://lake-test/lake", "w").unwrap();
    let hour = "year=2019/month=10/day=01/hour=00";
    let file = |start| {
        let path = data_file(EVENTS, hour, "t", 1, start);
        PendingFile { path, bytes: Bytes::from_static(b"rows"), rows: 1 }
    };
    lake.commit("t", 1, [0, 4], &[file(0)]).unwrap();
    lake.commit("t", 1, [4, 9], &[file(4)]).unwrap();
    let err = lake.commit("t", 1, [4, 6], &[file(4)]).unwrap_err();
    assert!(matches!(err, LakeError::Taken { .. }), "{err}");
    assert_eq!(lake.committed_offsets().unwrap(), BTreeMap::from([("t/1".to_owned(), 9)]));
    assert_eq!(lake.latest_manifest("t", 1).unwrap().unwrap().end, 9);
}

//! The capture as a stage of the one driver, on the embedded log in a
//! temporary directory and a database and slot of the test's own on the
//! local PostgreSQL (wal_level=logical, set by `.ci/run`): snapshot then
//! changes, a run with nothing new adds nothing, and a capture stopped in
//! the middle of its snapshot resumes after the last row it wrote.

use std::collections::BTreeMap;

use cartflow_cdc::position::{HEADER, Position};
use cartflow_cdc::{CdcConfig, CdcError, CdcStats, run_cdc};
use cartflow_log::{EmbeddedLog, EmbeddedOptions, EventLog};
use cartflow_stream::StageControl;
use cartflow_testkit::{CaptureSource, read_all};

const TOPIC: &str = "tracking_postgres_cdc.public.items";

struct Capture {
    src: CaptureSource,
    _dir: tempfile::TempDir,
    log: EmbeddedLog,
    runtime: tokio::runtime::Runtime,
}

impl Capture {
    /// A table of `rows` rows to capture.
    fn new(rows: i64) -> Capture {
        let src = CaptureSource::create();
        src.db.query("CREATE TABLE items (id bigint PRIMARY KEY, name text); ALTER TABLE items REPLICA IDENTITY FULL");
        src.db.query(&format!("INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, {rows}) i"));
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).unwrap();
        Capture { src, _dir: dir, log, runtime: tokio::runtime::Runtime::new().unwrap() }
    }

    fn config(&self, batch: usize) -> CdcConfig {
        CdcConfig {
            postgres: self.src.db.url(),
            table: "public.items".into(),
            slot: self.src.slot.clone(),
            publication: format!("{}_pub", self.src.slot),
            batch,
            poll_ms: 20,
            ..CdcConfig::default()
        }
    }

    fn run(
        &self,
        batch: usize,
        control: &StageControl,
        progress: &mut dyn FnMut(&CdcStats),
    ) -> Result<CdcStats, CdcError> {
        run_cdc(self.runtime.handle(), &self.log, &self.config(batch), control, progress)
    }

    fn drain(&self) -> CdcStats {
        self.run(1000, &StageControl::new(true), &mut |_| {}).unwrap()
    }

    /// Records in the topic now.
    fn written(&self) -> u64 {
        self.log.topic(TOPIC).unwrap().map_or(0, |t| t.records())
    }

    /// Each record's operation (`r`, `c`, `u`, `d`, or `tombstone`) and position.
    fn records(&self) -> Vec<(String, Position)> {
        read_all(&self.log, TOPIC)
            .iter()
            .map(|r| {
                let op = if r.value.is_empty() {
                    "tombstone".to_owned()
                } else {
                    let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
                    v["op"].as_str().unwrap().to_owned()
                };
                (op, serde_json::from_str(r.header_str(HEADER).unwrap()).unwrap())
            })
            .collect()
    }
}

fn count(records: &[(String, Position)]) -> BTreeMap<&str, usize> {
    let mut n = BTreeMap::new();
    for (op, _) in records {
        *n.entry(op.as_str()).or_default() += 1;
    }
    n
}

#[test]
fn a_drain_takes_the_snapshot_then_the_changes_and_a_run_with_nothing_new_adds_nothing() {
    let c = Capture::new(25);
    let first = c.drain();
    assert_eq!((first.snapshot_rows, first.records()), (25, 25));
    let records = c.records();
    assert!(matches!(records.last(), Some((_, Position::Snapshot { last: true, .. }))), "{:?}", records.last());

    c.src.db.query("INSERT INTO items VALUES (26, 'new'), (27, 'newer')");
    c.src.db.query("UPDATE items SET name = 'renamed' WHERE id = 3");
    c.src.db.query("DELETE FROM items WHERE id = 4");
    let second = c.drain();
    assert_eq!((second.snapshot_rows, second.inserts, second.updates, second.deletes), (0, 2, 1, 1));
    assert!(!second.confirmed_lsn.is_empty() && second.confirmed_lsn != first.confirmed_lsn);

    let third = c.drain();
    assert_eq!(third.records(), 0, "{third:?}");
    assert_eq!(third.confirmed_lsn, second.confirmed_lsn);
    let records = c.records();
    let n = count(&records);
    assert_eq!(n, BTreeMap::from([("c", 2), ("d", 1), ("r", 25), ("tombstone", 1), ("u", 1)]));
}

#[test]
fn stopped_in_its_snapshot_a_capture_resumes_after_the_last_row_it_wrote() {
    let rows = 20_000;
    let c = Capture::new(rows);
    let control = StageControl::new(false);
    // Ctrl-C once the first pages are in the log, from another thread as a signal would.
    let stopped = std::thread::scope(|s| {
        let stop = control.clone();
        let c = &c;
        s.spawn(move || {
            let started = std::time::Instant::now();
            while c.written() < 30 && started.elapsed() < std::time::Duration::from_secs(60) {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            stop.stop();
        });
        c.run(7, &control, &mut |_| {})
    });
    assert!(matches!(stopped, Err(CdcError::Stopped)), "{stopped:?}");
    let written = c.records().len() as i64;
    assert!((30..rows).contains(&written), "{written} rows written before the stop");

    let rest = c.drain();
    assert_eq!(rest.snapshot_rows as i64, rows - written);
    let keys: Vec<i64> = c
        .records()
        .iter()
        .map(|(_, p)| match p {
            Position::Snapshot { pk, .. } => *pk,
            other => panic!("not a snapshot read: {other:?}"),
        })
        .collect();
    assert_eq!(keys, (1..=rows).collect::<Vec<_>>(), "every row once, in key order");
}

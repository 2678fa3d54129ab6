//! Writes the fuzz targets' seed corpora: real rows of the dataset (from
//! `../shared/data/real` when given) and generated events in every shape
//! the parsers take, a segment the embedded log wrote, a model, PostgreSQL
//! messages as the CDC unit tests captured them, MLflow searches, request
//! bodies and the shipped example configuration.
//! Usage: `cargo run -p cartflow-fuzz --example seeds -- CORPUS_DIR [REAL_CSV…]`

use std::path::{Path, PathBuf};

use cartflow_core::{Rules, time};
use cartflow_log::{EmbeddedLog, EmbeddedOptions, EventLog, ProducerRecord};
use cartflow_sources::{Generator, GeneratorConfig};
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let corpus = PathBuf::from(args.next().expect("usage: seeds CORPUS_DIR [REAL_CSV…]"));
    let real: Vec<String> = args.flat_map(|f| head_lines(&f, 200)).collect();
    let generated: Vec<_> = Generator::new(GeneratorConfig { events: 300, ..GeneratorConfig::default() }).collect();
    let mut seeds = Seeds { corpus, written: 0 };

    // CSV files: a header and rows, as they come, with a BOM and CRLF line ends.
    let header = cartflow_core::CSV_HEADER;
    for chunk in real.chunks(40) {
        seeds.add("csv_file", format!("{header}\n{}\n", chunk.join("\n")));
        seeds.add("csv_file", format!("\u{feff}{header}\r\n{}\r\n", chunk.join("\r\n")));
    }
    // Records: CSV lines (flag 1) and JSON in the three envelopes (flag 0).
    let rules = Rules::default();
    let mut events = generated.clone();
    for line in &real {
        seeds.add("record", [&[1u8][..], line.as_bytes()].concat());
        let parsed = cartflow_core::RawEvent::from_csv_line(line.as_bytes());
        if let Ok(event) = parsed.and_then(|raw| cartflow_core::validate(&raw, &rules)) {
            events.push(event);
        }
    }
    for (i, event) in events.iter().enumerate().step_by(3) {
        let mut plain = Vec::new();
        cartflow_sources::json::event_json(event, &mut plain);
        let value: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        let record = |v: serde_json::Value| [&[0u8][..], v.to_string().as_bytes()].concat();
        seeds.add("record", [&[0u8][..], &plain[..]].concat());
        seeds.add("record", record(json!({ "schema": { "type": "struct", "optional": false }, "payload": value })));
        let op = ["c", "r", "u", "d"][i % 4];
        let (before, after) = if op == "d" { (value.clone(), json!(null)) } else { (json!(null), value.clone()) };
        let change = json!({ "before": before, "after": after, "op": op, "ts_ms": 1_700_000_000_000i64,
                             "source": { "connector": "postgresql", "table": "user_behavior" } });
        seeds.add("record", record(change.clone()));
        seeds.add("record", record(json!({ "schema": {}, "payload": change })));
        seeds.add("timestamp", time::rfc3339(event.event_time));
        let mut dataset = String::new();
        time::format_dataset(event.event_time, &mut dataset);
        seeds.add("timestamp", dataset);
    }
    for t in ["2019-10-01T00:00:00.250+05:30", "2019-10-01 00:00:00", "2019-10-01T00:00:00.123456Z"] {
        seeds.add("timestamp", t);
    }

    seeds.add_all("pgoutput", pgoutput_messages());
    seeds.add_all("log_segment", segments(&events));
    seeds.add("model_file", cartflow_fuzz::model().to_json());
    seeds.add("model_file", serde_json::to_vec_pretty(&cartflow_fuzz::model()).unwrap());
    for search in [
        "metrics.auc > 0.7 and params.max_depth = '6'\nmetrics.auc DESC\nstart_time",
        "tags.`mlflow.runName` LIKE 'trial-%'\nattributes.start_time ASC",
        "attributes.status = 'FINISHED' AND metrics.`val auc` >= 0.5",
        "name ILIKE '%purchase%'\nname",
        "run_id IN ('a1', 'b2') and tags.mlflow.source.type != 'LOCAL'",
        "params.eta = \"0.1\"\nmetrics.log_loss",
    ] {
        seeds.add("search_filter", search);
    }
    for (i, event) in events.iter().enumerate().step_by(7) {
        let cart = json!({ "user_id": event.user_id, "product_id": event.product_id,
                           "user_session": event.user_session, "event_time": time::rfc3339(event.event_time),
                           "price": event.price, "brand": event.brand, "category_code": event.category_code });
        let body = match i % 3 {
            0 => json!([cart, { "user_id": 1, "product_id": 2 }]),
            1 => cart,
            _ => json!({ "feature_service": "purchase_prediction",
                         "entities": { "user_id": [event.user_id], "product_id": [event.product_id],
                                       "user_session": [event.user_session], "price": [event.price] } }),
        };
        seeds.add("api_body", [&[(i % 3) as u8][..], body.to_string().as_bytes()].concat());
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cartflow.toml.example");
    seeds.add("config", std::fs::read(example).expect("the shipped example configuration"));
    seeds.add("config", "log = \"kafka://broker:9092\"\n[features]\nonline = \"redis://r:6379/0\"\n");
    println!("{} seeds in {}", seeds.written, seeds.corpus.display());
}

struct Seeds {
    corpus: PathBuf,
    written: usize,
}

impl Seeds {
    fn add(&mut self, target: &str, bytes: impl AsRef<[u8]>) {
        let dir = self.corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{}", self.written)), bytes).unwrap();
        self.written += 1;
    }

    fn add_all(&mut self, target: &str, all: Vec<Vec<u8>>) {
        for bytes in all {
            self.add(target, bytes);
        }
    }
}

/// The first `n` data rows of a CSV file of the dataset.
fn head_lines(path: &str, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines().skip(1).take(n).map(str::to_owned).collect()
}

/// Segments the embedded log wrote, in the target's input format: flags
/// (checksums kept as written), the next segment's base, the split point.
fn segments(events: &[cartflow_core::Event]) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions { default_partitions: 1, ..EmbeddedOptions::default() };
    let log = EmbeddedLog::open(dir.path(), opts).unwrap();
    let mut producer = log.producer().unwrap();
    for (i, event) in events.iter().take(12).enumerate() {
        let mut value = Vec::new();
        cartflow_sources::json::event_json(event, &mut value);
        let headers: &[(&str, &[u8])] = if i % 2 == 0 {
            &[("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
        } else {
            &[]
        };
        let key = event.partition_key();
        producer.send(ProducerRecord { headers, ..ProducerRecord::new("t", Some(key.as_bytes()), &value) }).unwrap();
    }
    producer.flush().unwrap();
    let segment = std::fs::read(dir.path().join("topics/t/0/00000000000000000000.log")).unwrap();
    vec![
        [&[0u8, 0, 0][..], &segment].concat(),
        [&[2u8, 5, 128][..], &segment].concat(),
        [&[1u8, 0, 0][..], &segment[..segment.len() - 7]].concat(),
    ]
}

/// Messages of each kind pgoutput sends, laid out as the CDC decoder's unit
/// tests captured them from PostgreSQL 15.
fn pgoutput_messages() -> Vec<Vec<u8>> {
    let tuple = |values: &[Option<&str>]| {
        let mut b = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => b.push(b'n'),
                Some(s) => {
                    b.push(b't');
                    b.extend((s.len() as i32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
        b
    };
    let mut relation = vec![b'R', 0, 0, 0x40, 0];
    relation.extend(b"public\0user_behavior\0f");
    relation.extend(3i16.to_be_bytes());
    relation.extend(b"\x01id\0\0\0\0\x14\xff\xff\xff\xff");
    relation.extend(b"\x00price\0\0\0\x06\xa4\0\x0a\0\x06");
    relation.extend(b"\x00event_time\0\0\0\x04\xa0\xff\xff\xff\xff");
    let mut begin = vec![b'B'];
    begin.extend(0x01DA_DEF0u64.to_be_bytes());
    begin.extend(0i64.to_be_bytes());
    begin.extend(747u32.to_be_bytes());
    let mut insert = vec![b'I', 0, 0, 0x40, 0, b'N'];
    insert.extend(tuple(&[Some("1"), Some("35.79"), Some("2019-10-01 00:00:00+00")]));
    let mut update = vec![b'U', 0, 0, 0x40, 0, b'O'];
    update.extend(tuple(&[Some("1"), Some("1.50"), None]));
    update.push(b'N');
    update.extend(tuple(&[Some("1"), None, Some("2019-10-01 00:00:01+00")]));
    let mut delete = vec![b'D', 0, 0, 0x40, 0, b'K'];
    delete.extend(tuple(&[Some("1"), None, None]));
    let mut commit = vec![b'C', 0];
    commit.extend(0x01DA_DEF0u64.to_be_bytes());
    commit.extend(0x01DA_DF20u64.to_be_bytes());
    commit.extend(0i64.to_be_bytes());
    vec![relation, begin, insert, update, delete, commit, b"T\0\0\0\x01\0\0\0\x40\0".to_vec()]
}

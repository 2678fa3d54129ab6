//! Features end to end: the training set `features build` writes against
//! what the online store answers for the same cart events (zero skew), in
//! memory and in the Redis running here; the streamer's restarts and
//! `materialize`; the feature API, cartflow's and Feast's.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use cartflow_core::time::Micros;
use cartflow_core::{Event, EventType};
use cartflow_features::spec::{FEATURES, FeatureType, Value};
use cartflow_features::{CartAttrs, CartFeatures, CartQuery, DEFAULT_SESSION_TTL};
use cartflow_online::{Change, MemoryStore, OnlineStore, RedisStore};
use common::*;

/// Generated events through produce, validate, the lake sink and the warehouse.
fn land(dir: &Path, events: u64, seed: u64) {
    let csv = dir.join("events.csv");
    ok(cartflow(dir)
        .args(["generate", "-n", &events.to_string(), "--per-day", "20000", "--seed", &seed.to_string(), "--out"])
        .arg(&csv));
    ok(cartflow(dir).args(["produce", "--input"]).arg(&csv));
    ok(cartflow(dir).args(["validate", "--drain"]));
    ok(cartflow(dir).args(["lake-sink", "--drain"]));
    ok(cartflow(dir).args(["warehouse", "build"]));
}

/// A feature value that compares exactly (floats by bits).
#[derive(Debug, Clone, PartialEq, Eq)]
enum V {
    Null,
    Int(i64),
    Float(u64),
    Str(String),
}

fn owned(v: Value<'_>) -> V {
    match v {
        Value::Null => V::Null,
        Value::Int(i) => V::Int(i),
        Value::Float(x) => V::Float(x.to_bits()),
        Value::Str(s) => V::Str(s.to_owned()),
    }
}

fn values(f: &CartFeatures) -> Vec<V> {
    FEATURES.iter().map(|d| owned((d.get)(f))).collect()
}

struct OfflineRow {
    event_time: Micros,
    values: Vec<V>,
    is_purchased: bool,
}

/// `features.cart_features` as written, by (session, product).
fn read_training_set(dir: &Path) -> HashMap<(String, i64), OfflineRow> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
    use arrow_array::{Array, RecordBatch};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut rows = HashMap::new();
    let files = std::fs::read_dir(dir.join("data/lake/features/cart_features")).unwrap();
    for f in files {
        let f = std::fs::File::open(f.unwrap().path()).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap() {
            let b: RecordBatch = batch.unwrap();
            let col = |n: &str| b.column_by_name(n).unwrap_or_else(|| panic!("no column {n}"));
            let time = col("event_time").as_primitive::<TimestampMicrosecondType>();
            let product = col("product_id").as_primitive::<Int64Type>();
            let session = col("user_session").as_string::<i32>();
            let label = col("is_purchased").as_boolean();
            for i in 0..b.num_rows() {
                let values = FEATURES
                    .iter()
                    .map(|d| {
                        let c = col(d.name);
                        if c.is_null(i) {
                            return V::Null;
                        }
                        match d.dtype {
                            FeatureType::Int64 => V::Int(c.as_primitive::<Int64Type>().value(i)),
                            FeatureType::Float64 => V::Float(c.as_primitive::<Float64Type>().value(i).to_bits()),
                            FeatureType::String => V::Str(c.as_string::<i32>().value(i).to_owned()),
                        }
                    })
                    .collect();
                let row = OfflineRow { event_time: time.value(i), values, is_purchased: label.value(i) };
                assert!(rows.insert((session.value(i).to_owned(), product.value(i)), row).is_none(), "one row per key");
            }
        }
    }
    rows
}

/// The validated events with their CDC operation, in event-time order.
fn validated_events(dir: &Path) -> Vec<Change> {
    let mut changes: Vec<Change> = read_topic(dir, VALIDATED)
        .iter()
        .map(|r| Change {
            event: Event::from_json(&r.value).unwrap(),
            delete: r.header_str("cartflow.op") == Some("d"),
            partition: r.partition,
            offset: r.offset,
        })
        .collect();
    changes.sort_by_key(|c| c.event.event_time);
    changes
}

/// What a prediction request for this cart carries.
fn request_attrs(e: &Event) -> CartAttrs {
    CartAttrs { price: Some(e.price), brand: e.brand.clone(), category_code: e.category_code.clone(), complete: false }
}

fn ask(rt: &tokio::runtime::Runtime, store: &dyn OnlineStore, e: &Event) -> Vec<V> {
    let attrs = request_attrs(e);
    let q = CartQuery::of(e, Some(&attrs));
    values(&rt.block_on(store.features(&q)).unwrap().features)
}

fn is_cart(e: &Event) -> bool {
    e.event_type == EventType::Cart && e.user_session.is_some()
}

/// Replays the events into `store` a second at a time and, once a second is
/// in, asks for every first cart of it and compares with its offline row.
/// Returns the rows compared.
fn replay_and_compare(
    rt: &tokio::runtime::Runtime,
    writers: &[&dyn OnlineStore],
    store: &dyn OnlineStore,
    changes: &[Change],
    offline: &HashMap<(String, i64), OfflineRow>,
) -> usize {
    let mut compared = 0;
    let mut asked = std::collections::HashSet::new();
    // Applied in event-time order, not the topic's: each of four partitions
    // (the validator's key decides) numbered in that order, and the writers
    // (streamers of one group) holding a share of the partitions each.
    let mut next = [0u64; 4];
    let changes: Vec<Change> = changes
        .iter()
        .map(|c| {
            let partition = c.event.partition_in(4);
            next[partition as usize] += 1;
            Change { partition, offset: next[partition as usize], ..c.clone() }
        })
        .collect();
    for second in changes.chunk_by(|a, b| a.event.event_time == b.event.event_time) {
        for (w, writer) in writers.iter().enumerate() {
            let own: Vec<Change> =
                second.iter().filter(|c| c.partition as usize % writers.len() == w).cloned().collect();
            writer.apply(&own, &[]).unwrap();
        }
        for c in second.iter().filter(|c| is_cart(&c.event) && !c.delete) {
            let key = (c.event.user_session.clone().unwrap(), c.event.product_id);
            if !asked.insert(key.clone()) {
                continue;
            }
            let row = offline.get(&key).unwrap_or_else(|| panic!("no training row for the first cart {:?}", c.event));
            assert_eq!(row.event_time, c.event.event_time);
            let online = ask(rt, store, &c.event);
            for ((d, on), off) in FEATURES.iter().zip(&online).zip(&row.values) {
                assert_eq!(on, off, "{} of the cart {:?}: online {on:?}, offline {off:?}", d.name, c.event);
            }
            compared += 1;
        }
    }
    assert_eq!(compared, offline.len(), "every training row is a first cart the online path answered");
    compared
}

#[test]
fn online_answers_equal_the_training_set_in_memory_and_in_redis() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    land(d, 120_000, 5);
    let out = stdout(&ok(cartflow(d).args(["features", "build"])));
    assert!(out.contains("features.cart_features:"), "{out}");
    let offline = read_training_set(d);
    assert!(offline.len() > 1_000, "{} rows", offline.len());
    assert!(offline.values().any(|r| r.is_purchased) && offline.values().any(|r| !r.is_purchased));

    let changes = validated_events(d);
    assert!(changes.len() >= 100_000, "{} events", changes.len());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let memory = MemoryStore::new(DEFAULT_SESSION_TTL);
    let compared = replay_and_compare(&rt, &[&memory], &memory, &changes, &offline);
    println!("memory: {compared} carts, {} values each, all equal", FEATURES.len());

    let keys = RedisPrefix::new("skew");
    // The store reads on a connection of its own, as an API replica would.
    let redis = RedisStore::open(&keys.url, &keys.prefix, DEFAULT_SESSION_TTL).unwrap();
    assert_eq!(replay_and_compare(&rt, &[&redis], &redis, &changes, &offline), compared);
    // Two streamers of one group, each writing two of the four partitions: the same answers.
    let shared = RedisPrefix::new("skew-shared");
    let open = || RedisStore::open(&shared.url, &shared.prefix, DEFAULT_SESSION_TTL).unwrap();
    let (a, b, reader) = (open(), open(), open());
    assert_eq!(replay_and_compare(&rt, &[&a, &b], &reader, &changes, &offline), compared);

    // The labels are the warehouse's: the same first carts, bought or not.
    let mismatched = stdout(&ok(cartflow(d).args([
        "sql",
        "SELECT COUNT(*) AS n FROM features.cart_features f FULL JOIN gold.fact_cart_outcomes g \
         ON f.user_session = g.user_session AND f.product_id = g.product_id \
         WHERE f.user_session IS NULL OR g.user_session IS NULL OR f.is_purchased <> g.is_purchased \
         OR f.event_time <> g.cart_time",
        "--format",
        "csv",
    ])));
    assert_eq!(mismatched.lines().nth(1), Some("0"), "{mismatched}");

    // The offline store's PostgreSQL copy, twice (it replaces itself).
    let db = TestDatabase::create();
    for _ in 0..2 {
        let out = stdout(&ok(cartflow(d).args(["features", "build", "--postgres", &db.url()])));
        assert!(out.contains("feature_store.cart_features"), "{out}");
    }
    assert_eq!(db.query("SELECT COUNT(*) FROM feature_store.cart_features"), offline.len().to_string());
    let key = db.query(
        "SELECT string_agg(a.attname, ',' ORDER BY a.attname) FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = 'feature_store.cart_features'::regclass AND i.indisprimary",
    );
    assert_eq!(key, "product_id,user_session");
    let positives = offline.values().filter(|r| r.is_purchased).count();
    assert_eq!(db.query("SELECT COUNT(*) FROM feature_store.cart_features WHERE is_purchased"), positives.to_string());
}

/// Asks for every cart right before and right after it reaches the store,
/// with every other event of its time already in: the same answer, in
/// memory and in Redis. (Generated events straight from the generator, as
/// the validator would pass them.)
#[test]
fn a_cart_gets_the_same_features_whether_or_not_it_reached_the_store() {
    use cartflow_sources::{Generator, GeneratorConfig, Profile};
    let mut events: Vec<Event> = Generator::new(GeneratorConfig {
        events: 40_000,
        seed: 21,
        profile: Profile::Cosmetics,
        ..GeneratorConfig::default()
    })
    .collect();
    events.sort_by_key(|e| e.event_time);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let keys = RedisPrefix::new("reached");
    let redis = RedisStore::open(&keys.url, &keys.prefix, DEFAULT_SESSION_TTL).unwrap();
    let memory = MemoryStore::new(DEFAULT_SESSION_TTL);
    let mut carts = 0;
    // The events as one input partition, numbered in the order applied.
    let mut next = 0;
    let mut change = |e: &Event| {
        next += 1;
        Change { event: e.clone(), delete: false, partition: 0, offset: next }
    };
    for second in events.chunk_by(|a, b| a.event_time == b.event_time) {
        let (own, others): (Vec<&Event>, Vec<&Event>) = second.iter().partition(|e| is_cart(e));
        let others: Vec<Change> = others.into_iter().map(&mut change).collect();
        let own: Vec<Change> = own.into_iter().map(&mut change).collect();
        for store in [&memory as &dyn OnlineStore, &redis] {
            store.apply(&others, &[]).unwrap();
            // Each cart of the second, asked before and after it is applied;
            // the second's other carts are in or not the same way both times.
            for c in &own {
                let cart = &c.event;
                let before = ask(&rt, store, cart);
                store.apply(std::slice::from_ref(c), &[]).unwrap();
                assert_eq!(ask(&rt, store, cart), before, "{} store, cart {cart:?}", store.describe());
            }
        }
        carts += own.len();
    }
    assert!(carts > 500, "{carts} carts");
}

#[test]
fn features_list_names_every_feature_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(&ok(cartflow(dir.path()).args(["features", "list"])));
    for f in &FEATURES {
        assert_eq!(out.lines().filter(|l| l.starts_with(&format!("{} ", f.name))).count(), 1, "{}: {out}", f.name);
    }
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&ok(cartflow(dir.path()).args(["features", "list", "--json"])))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), FEATURES.len());
    assert_eq!(json[0]["name"], "price");
    assert_eq!(json[0]["set"], "v1");
}

/// The entity state a replay of `changes` in event-time order ends in.
fn reference_state(changes: &[Change]) -> cartflow_features::Entities {
    let mut e = cartflow_features::Entities::new(DEFAULT_SESSION_TTL);
    for c in changes {
        e.apply(&c.event, c.delete);
    }
    e.expire_sessions();
    e
}

/// Equal as the features see them: sessions' events, users' and products'
/// counts, products' attributes.
fn assert_same_state(got: &cartflow_features::Entities, want: &cartflow_features::Entities, what: &str) {
    let mut got = got.clone();
    got.watermark = got.watermark.max(want.watermark);
    got.expire_sessions();
    assert_eq!(got.sessions.len(), want.sessions.len(), "{what}: live sessions");
    for (k, s) in &want.sessions {
        assert_eq!(got.sessions.get(k), Some(s), "{what}: session {k}");
    }
    assert_eq!(got.users.len(), want.users.len(), "{what}: users");
    for (k, u) in &want.users {
        let g = &got.users[k];
        assert_eq!(g.counts.totals(), u.counts.totals(), "{what}: user {k}");
    }
    assert_eq!(got.products.len(), want.products.len(), "{what}: products");
    for (k, p) in &want.products {
        let g = &got.products[k];
        assert_eq!((g.counts.totals(), &g.attrs), (p.counts.totals(), &p.attrs), "{what}: product {k}");
    }
}

fn snapshot_state(dir: &Path) -> cartflow_features::Entities {
    let store = MemoryStore::open(dir.join("data/features/online.snapshot"), DEFAULT_SESSION_TTL).unwrap();
    store.with_entities(|e| e.clone())
}

#[test]
fn the_streamer_resumes_after_kill_9_and_materialize_gives_the_same_state() {
    use rand::Rng;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    land(d, 30_000, 13);
    let mut rng = rand::rng();
    for _ in 0..4 {
        let mut child = cartflow(d)
            .args(["features", "stream"])
            .env("CARTFLOW_FEATURES__STREAMER__SNAPSHOT_SECS", "0")
            .env("CARTFLOW_FEATURES__STREAMER__BATCH", "256")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.random_range(150..700)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let out = stdout(&ok(cartflow(d).args(["features", "stream", "--drain"])));
    assert!(out.contains("streamed"), "{out}");
    let reference = reference_state(&validated_events(d));
    assert_same_state(&snapshot_state(d), &reference, "streamed with kill -9");

    // Materialize from silver into the same (embedded) store: the same state.
    std::fs::remove_file(d.join("data/features/online.snapshot")).unwrap();
    let out = stdout(&ok(cartflow(d).args(["features", "materialize"])));
    assert!(out.contains("materialized"), "{out}");
    assert_same_state(&snapshot_state(d), &reference, "materialized");

    // New days land; the log is not read: --incremental takes them from the lake.
    let more = d.join("more.csv");
    ok(cartflow(d)
        .args(["generate", "-n", "5000", "--per-day", "20000", "--seed", "14", "--start", "2019-10-03 00:00:00 UTC"])
        .arg("--out")
        .arg(&more));
    ok(cartflow(d).args(["produce", "--input"]).arg(&more));
    ok(cartflow(d).args(["validate", "--drain"]));
    ok(cartflow(d).args(["lake-sink", "--drain"]));
    let out = stdout(&ok(cartflow(d).args(["features", "materialize", "--incremental"])));
    assert!(out.contains("landed events beyond"), "{out}");
    assert_same_state(&snapshot_state(d), &reference_state(&validated_events(d)), "materialized incrementally");
    // …and the streamer, started now, finds nothing left to count.
    let out = stdout(&ok(cartflow(d).args(["features", "stream", "--drain"])));
    assert!(out.contains("streamed 0 events"), "{out}");
}

/// An HTTP client that returns 4xx and 5xx responses instead of failing.
fn http() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// A running feature API and the token it is asked with.
struct Api {
    port: u16,
    token: String,
}

impl Api {
    fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let mut resp = http()
            .post(&format!("http://127.0.0.1:{}{path}", self.port))
            .header("content-type", "application/json")
            .header("authorization", &format!("Bearer {}", self.token))
            .send(body)
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} answered non-JSON {text:?}: {e}")))
    }

    /// `/status`, once the server answers.
    fn status(&self) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/status", self.port);
        let mut resp = http().get(&url).header("authorization", &format!("Bearer {}", self.token)).call().ok()?;
        serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut resp = http()
            .get(&format!("http://127.0.0.1:{}{path}", self.port))
            .header("authorization", &format!("Bearer {}", self.token))
            .call()
            .unwrap();
        (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap())
    }
}

fn json_values(features: &serde_json::Value, names: impl Iterator<Item = &'static str>) -> Vec<V> {
    names
        .map(|n| match &features[n] {
            serde_json::Value::Null => V::Null,
            serde_json::Value::String(s) => V::Str(s.clone()),
            v if v.is_i64() => V::Int(v.as_i64().unwrap()),
            v => V::Float(v.as_f64().unwrap().to_bits()),
        })
        .collect()
}

#[test]
fn the_feature_api_answers_cartflow_and_feast_requests_and_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    land(d, 20_000, 9);
    let port = free_port();
    let mut server = cartflow(d)
        .args(["features", "serve", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let changes = validated_events(d);
    // Wait for the in-process streamer to hold every event (the token appears at start).
    let started = std::time::Instant::now();
    let api = loop {
        assert!(started.elapsed().as_secs() < 60, "the streamer did not catch up");
        if let Ok(token) = std::fs::read_to_string(d.join("data/auth/token")) {
            let api = Api { port, token: token.trim().to_owned() };
            if let Some(h) = api.status() {
                let s = &h["stages"]["features"];
                if s["lag"] == 0 && s["read"].as_u64() == Some(changes.len() as u64) {
                    break api;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // Every route but /health asks a token, and /health says nothing more than ok.
    let (status, health) = Api { port, token: String::new() }.get("/health");
    assert_eq!((status, health.as_str()), (200, r#"{"status":"ok"}"#));
    for path in ["/features", "/get-online-features", "/metrics", "/status"] {
        let (status, _) = Api { port, token: "not-a-known-token-000".into() }.get(path);
        assert_eq!(status, 401, "{path}");
    }
    let local = MemoryStore::new(DEFAULT_SESSION_TTL);
    local.apply(&changes, &[]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cart = &changes.iter().rev().find(|c| is_cart(&c.event)).unwrap().event;
    let time = cartflow_core::time::rfc3339(cart.event_time);

    // cartflow's request: the same values as the store answers in process.
    let body = serde_json::json!({
        "user_id": cart.user_id, "product_id": cart.product_id, "user_session": cart.user_session,
        "event_time": time, "price": cart.price, "brand": cart.brand, "category_code": cart.category_code,
    });
    let (status, answer) = api.post("/features", &body.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(json_values(&answer["features"], FEATURES.iter().map(|f| f.name)), ask(&rt, &local, cart));
    let (_, v1) = api.post(
        "/features",
        &serde_json::json!({"user_id": 1, "product_id": 2, "feature_service": "cart_v1"}).to_string(),
    );
    assert_eq!(v1["features"].as_object().unwrap().len(), 6, "{v1}");

    // Feast's request and response shape: entity columns first, then features.
    let feast = serde_json::json!({
        "feature_service": "cart_v1",
        "entities": {
            "user_id": [cart.user_id, 999], "product_id": [cart.product_id, 999],
            "user_session": [cart.user_session, null], "event_time": [time, time],
        },
    });
    let (status, answer) = api.post("/get-online-features", &feast.to_string());
    assert_eq!(status, 200, "{answer}");
    let names: Vec<&str> =
        answer["metadata"]["feature_names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let v1_names: Vec<&str> = cartflow_features::FeatureSet::V1.features().map(|f| f.name).collect();
    assert_eq!(names[..3], ["user_id", "product_id", "user_session"]);
    assert_eq!(names[3..], v1_names[..]);
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), names.len());
    for r in results {
        assert_eq!(r["values"].as_array().unwrap().len(), 2, "{r}");
        assert_eq!(r["statuses"].as_array().unwrap().len(), 2, "{r}");
        assert_eq!(r["event_timestamps"].as_array().unwrap().len(), 2, "{r}");
    }
    // Product 999 was never seen and its price not given: not found.
    let price = &results[3];
    assert_eq!(price["statuses"], serde_json::json!(["PRESENT", "NOT_FOUND"]), "{price}");
    let refs = serde_json::json!({
        "features": ["session_activity:activity_count", "user_history:user_prior_carts"],
        "entities": {"user_id": [cart.user_id], "product_id": [cart.product_id], "user_session": [cart.user_session], "event_time": [time]},
        "full_feature_names": true,
    });
    let (status, answer) = api.post("/get-online-features", &refs.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["metadata"]["feature_names"][3], "session_activity__activity_count");
    let expected = ask(&rt, &local, cart);
    assert_eq!(answer["results"][3]["values"][0].as_i64().map(V::Int), Some(expected[5].clone()));

    // Bad requests: 4xx with a JSON error that names what is wrong.
    for (path, body, status, says) in [
        ("/features", "{", 400, "EOF"),
        ("/features", r#"{"user_id": 1}"#, 422, "product_id"),
        ("/features", r#"{"user_id": "x", "product_id": 1}"#, 422, "user_id"),
        ("/features", r#"{"user_id": 1, "product_id": 1, "features": ["nope"]}"#, 404, "nope"),
        ("/features", r#"{"user_id": 1, "product_id": 1, "event_time": "yesterday"}"#, 400, "event_time"),
        ("/features", r#"{"user_id": 1, "product_id": 1, "feature_service": "v9"}"#, 404, "v9"),
        (
            "/get-online-features",
            r#"{"features": ["user_history:activity_count"], "entities": {"user_id": [1], "product_id": [1]}}"#,
            404,
            "user_history",
        ),
        (
            "/get-online-features",
            r#"{"feature_service": "cart_v2", "entities": {"user_id": [1, 2], "product_id": [1]}}"#,
            400,
            "entities.product_id",
        ),
        (
            "/get-online-features",
            r#"{"feature_service": "cart_v2", "entities": {"user_id": [1], "product_id": [1], "colour": [1]}}"#,
            400,
            "colour",
        ),
        ("/get-online-features", r#"{"entities": {"user_id": [1], "product_id": [1]}}"#, 400, "feature_service"),
        ("/nowhere", "{}", 404, "no such route"),
    ] {
        let (got, answer) = api.post(path, body);
        assert_eq!(got, status, "{path} {body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_else(|| panic!("{path} {body}: no error in {answer}"));
        assert!(error.contains(says), "{path} {body}: {error:?} does not say {says:?}");
    }
    // Feast's client sends fields this server does not know: ignored, as Feast's server does.
    let newer = serde_json::json!({
        "features": ["cart_event:price"], "entities": {"user_id": [1], "product_id": [1]},
        "include_feature_view_version_metadata": true, "some_future_field": {"x": 1},
    });
    let (status, answer) = api.post("/get-online-features", &newer.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["metadata"]["feature_view_metadata"], serde_json::json!([{ "name": "cart_event" }]));
    // Rows are capped: a huge request is refused, not answered with gigabytes.
    let many: Vec<i64> = (0..1001).collect();
    let huge = serde_json::json!({ "feature_service": "cart_v2", "entities": { "user_id": many, "product_id": many } });
    let (status, answer) = api.post("/get-online-features", &huge.to_string());
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("at most 1000"), "{answer}");
    let (status, metrics) = api.get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("cartflow_feature_requests_total"), "{metrics}");
    assert!(metrics.contains(r#"status="422""#), "{metrics}");
    server.kill().unwrap();
    server.wait().unwrap();
}

/// The Python environment with Feast (`pip install 'feast[redis]'`), which
/// `.ci/run` makes apart from MLflow's so their pins cannot clash.
/// `None` (the test is skipped) only outside CI, when it is missing.
fn feast_venv() -> Option<std::path::PathBuf> {
    let venv = std::env::var("FEAST_VENV").map(std::path::PathBuf::from).unwrap_or_else(|_| {
        std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/cartflow/feast-venv")
    });
    let found = venv.join("bin/feast").exists();
    if !found {
        cartflow_testkit::tools::missing(&format!("Feast in {} (.ci/run installs it)", venv.display()));
    }
    found.then_some(venv)
}

#[test]
fn feasts_sdk_reads_cartflows_features_and_answers_as_feasts_own_server() {
    let venv = needs!(feast_venv());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    land(d, 20_000, 21);
    let changes = validated_events(d);
    let port = free_port();
    let log = std::fs::File::create(d.join("features.log")).unwrap();
    let mut server = cartflow(d)
        .args(["features", "serve", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let api = loop {
        assert!(started.elapsed().as_secs() < 60, "the streamer did not catch up");
        if let Ok(token) = std::fs::read_to_string(d.join("data/auth/token")) {
            let api = Api { port, token: token.trim().to_owned() };
            if api.status().is_some_and(|h| h["stages"]["features"]["read"].as_u64() == Some(changes.len() as u64)) {
                break api;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // The repository Feast's users apply, generated from the catalogue.
    let url = format!("http://127.0.0.1:{port}");
    ok(cartflow(d).args(["features", "feast-repo", "--url", &url, "--out"]).arg(d.join("feast")));
    let path = format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let applied = Command::new(venv.join("bin/feast"))
        .arg("apply")
        .current_dir(d.join("feast"))
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(applied.status.success(), "feast apply: {}", String::from_utf8_lossy(&applied.stderr));
    // The same definitions on Feast's own server, with its SQLite online store, nothing materialized.
    std::fs::create_dir_all(d.join("feast-own/data")).unwrap();
    std::fs::copy(d.join("feast/cartflow_repo.py"), d.join("feast-own/cartflow_repo.py")).unwrap();
    std::fs::write(
        d.join("feast-own/feature_store.yaml"),
        "project: cartflow\nprovider: local\nregistry: data/registry.db\nonline_store:\n  type: sqlite\n  path: data/online.db\nentity_key_serialization_version: 3\n",
    )
    .unwrap();
    let cart = &changes.iter().rev().find(|c| is_cart(&c.event)).unwrap().event;
    let cart = serde_json::json!({
        "user_id": cart.user_id, "product_id": cart.product_id, "user_session": cart.user_session,
        "event_time": cartflow_core::time::rfc3339(cart.event_time), "price": cart.price, "brand": cart.brand,
        "category_code": cart.category_code,
    });
    std::fs::write(d.join("cart.json"), cart.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/feast_client.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(script)
        .args([&url, &d.join("feast").display().to_string(), &d.join("feast-own").display().to_string()])
        .arg(d.join("cart.json"))
        .env("FEAST_OIDC_TOKEN", &api.token)
        .env("PATH", &path)
        .output()
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "feast_client.py: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

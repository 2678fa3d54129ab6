//! Traces over OTLP, into a real receiver: otelite (installed by .ci/run),
//! whose REST API lists the spans it received. Each stage runs as its own
//! process, as in distributed mode, with the standard `OTEL_*` variables.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// otelite on free ports, with its own data directory.
struct Receiver {
    server: Server,
    otlp: String,
}

impl Receiver {
    fn start(dir: &Path) -> Option<Receiver> {
        let bin = tool("otelite", "OTELITE_BIN")?;
        let (api, otlp, grpc) = (free_port(), free_port(), free_port());
        let data = dir.join("otelite");
        let mut cmd = Command::new(bin);
        cmd.env("OTELITE_DATA_DIR", &data)
            .env("OTELITE_OTLP_HTTP_PORT", otlp.to_string())
            .env("OTELITE_OTLP_GRPC_PORT", grpc.to_string())
            .args(["serve", "--addr", &format!("127.0.0.1:{api}"), "--storage-path"])
            .arg(&data);
        let server = Server::start(cmd, api, "/api/health", Duration::from_secs(30), &dir.join("otelite.log"));
        Some(Receiver { server, otlp: format!("http://127.0.0.1:{otlp}") })
    }

    /// A JSON answer of otelite's API (`null` for a trace not received yet: a 404).
    fn get(&self, path: &str) -> Value {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
        let mut r = agent.get(format!("{}{path}", self.server.url)).call().expect("otelite answers");
        if r.status() == 404 {
            return Value::Null;
        }
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// Every span of the trace.
    fn spans(&self, trace_id: &str) -> Vec<Value> {
        self.get(&format!("/api/traces/{trace_id}"))["spans"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `found` holds of the traces received (exports are batched).
    fn wait_for<T>(&self, what: &str, found: impl Fn(&Receiver) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(t) = found(self) {
                return t;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "otelite never received {what}: {}",
                self.get("/api/traces?limit=50")
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// `cartflow` exporting its traces to `otlp`, every request and batch sampled.
fn traced(dir: &Path, otlp: &str) -> Command {
    let mut c = cartflow(dir);
    c.env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp).env("OTEL_TRACES_SAMPLER_ARG", "1.0");
    c
}

fn name_and_service(span: &Value) -> (String, String) {
    (
        span["name"].as_str().unwrap_or_default().to_owned(),
        span["resource"]["attributes"]["service.name"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn one_trace_follows_an_event_through_every_stage_and_a_prediction_to_its_lookup_and_scoring() {
    if !python_modules("python3", &["mlflow"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(receiver) = Receiver::start(dir.path()) else { return };
    // A model to serve, untraced; then new events through each stage as its own process.
    ok(cartflow(dir.path()).args(["run", "--once", "--events", "60000"]));
    let otlp = receiver.otlp.clone();
    ok(traced(dir.path(), &otlp).env("CARTFLOW_TELEMETRY__RECORD_RATIO", "0.01").args([
        "produce",
        "--generate",
        "3000",
        "--seed",
        "7",
    ]));
    ok(traced(dir.path(), &otlp).args(["validate", "--drain"]));
    ok(traced(dir.path(), &otlp).args(["lake-sink", "--drain"]));
    ok(traced(dir.path(), &otlp).args(["features", "stream", "--drain"]));

    // One event's trace: its produce span is the root, the validator's span
    // its child, the lake sink's and the feature streamer's children of that.
    let event_trace = receiver.wait_for("an event traced through all four stages", |r| {
        let traces = r.get("/api/traces?limit=1000");
        traces["traces"].as_array()?.iter().filter(|t| t["root_span_name"] == "produce").find_map(|t| {
            let spans = r.spans(t["trace_id"].as_str()?);
            (spans.len() == 4).then_some(spans)
        })
    });
    let by_name = |name: &str| {
        event_trace.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{name}: {event_trace:?}"))
    };
    let (produce, validate, lake, features) =
        (by_name("produce"), by_name("validate"), by_name("lake-sink"), by_name("features"));
    assert_eq!(name_and_service(produce).1, "cartflow-produce");
    assert_eq!(name_and_service(validate).1, "cartflow-validate");
    assert_eq!(name_and_service(lake).1, "cartflow-lake-sink");
    assert_eq!(name_and_service(features).1, "cartflow-features-stream");
    assert!(produce["parent_span_id"].is_null() || produce["parent_span_id"] == "", "{produce}");
    assert_eq!(validate["parent_span_id"], produce["span_id"]);
    assert_eq!(lake["parent_span_id"], validate["span_id"]);
    assert_eq!(features["parent_span_id"], validate["span_id"]);
    // Each step says where it read the event.
    let read = |s: &Value| {
        let a = &s["attributes"];
        assert!(a["messaging.destination.partition.id"].is_string() && a["messaging.kafka.offset"].is_string(), "{s}");
        a["messaging.destination.name"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(read(validate), "tracking.raw_user_behavior");
    assert_eq!(read(lake), VALIDATED);
    assert_eq!(read(features), VALIDATED);
    // Each step ends after the one before it made the event durable.
    let end = |s: &Value| s["end_time"].as_i64().unwrap();
    assert!(end(produce) <= end(validate) && end(validate) <= end(lake) && end(validate) <= end(features));
    // And each stage's batches are spans of their own, with what they held.
    let batches = receiver.get("/api/traces?limit=1000");
    let roots: Vec<&str> =
        batches["traces"].as_array().unwrap().iter().filter_map(|t| t["root_span_name"].as_str()).collect();
    for stage in ["validate batch", "lake-sink batch", "features batch"] {
        assert!(roots.contains(&stage), "no {stage} span: {roots:?}");
    }

    // A prediction continuing the caller's trace: the request span, and the
    // feature lookup and scoring inside it.
    let port = free_port();
    let mut cmd = traced(dir.path(), &otlp);
    cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}")]);
    let serve = Server::start(cmd, port, "/health", Duration::from_secs(60), &dir.path().join("serve.log"));
    let token = std::fs::read_to_string(dir.path().join("data/auth/token")).unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let carts = json!([{ "user_id": 1, "product_id": 2, "user_session": "s", "price": 9.5,
                          "event_time": "2019-10-03 12:00:00 UTC" }]);
    let status = ureq::post(format!("{}/predict", serve.url))
        .header("authorization", format!("Bearer {}", token.trim()))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send_json(&carts)
        .expect("a prediction")
        .status();
    assert_eq!(status, 200);
    // The server exports every few seconds while it runs.
    let spans = receiver.wait_for("the prediction's spans", |r| {
        let spans = r.spans(trace_id);
        (spans.len() >= 3).then_some(spans)
    });
    let request = spans.iter().find(|s| s["name"] == "POST /predict").unwrap_or_else(|| panic!("{spans:?}"));
    assert_eq!(request["parent_span_id"], "00f067aa0ba902b7", "{request}");
    assert_eq!(name_and_service(request).1, "cartflow-serve");
    assert_eq!(request["attributes"]["http.response.status_code"], "200", "{request}");
    for step in ["features", "score"] {
        let s = spans.iter().find(|s| s["name"] == step).unwrap_or_else(|| panic!("no {step} span: {spans:?}"));
        assert_eq!(s["parent_span_id"], request["span_id"], "{s}");
    }
    drop(serve);
}

/// A change captured from PostgreSQL starts its own trace, which the
/// validator continues: for the snapshot's rows and for later changes alike.
#[test]
fn a_captured_change_starts_a_trace_the_validator_continues() {
    let dir = tempfile::tempdir().unwrap();
    let Some(receiver) = Receiver::start(dir.path()) else { return };
    let source = CaptureSource::create();
    ok(cartflow(dir.path()).args(["cdc", "seed", "--postgres", &source.db.url(), "--events", "200"]));
    let capture = || {
        let mut c = traced(dir.path(), &receiver.otlp);
        c.env("CARTFLOW_TELEMETRY__RECORD_RATIO", "1.0");
        c.args(["cdc", "--postgres", &source.db.url(), "--slot", &source.slot, "--drain"]);
        c
    };
    ok(&mut capture());
    source.db.query("UPDATE events SET price = price + 1 WHERE id = 5");
    ok(&mut capture());
    ok(traced(dir.path(), &receiver.otlp).args(["validate", "--drain"]));

    // 200 snapshot rows and one update, each a trace: cdc, then validate.
    let traces = receiver.wait_for("201 captured changes traced through the validator", |r| {
        let traces = r.get("/api/traces?limit=1000");
        let cdc: Vec<Value> =
            traces["traces"].as_array()?.iter().filter(|t| t["root_span_name"] == "cdc").cloned().collect();
        (cdc.len() == 201).then_some(cdc)
    });
    for t in traces.iter().step_by(40) {
        let spans = receiver.spans(t["trace_id"].as_str().unwrap());
        let find = |name: &str| spans.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{name}: {spans:?}"));
        let (cdc, validate) = (find("cdc"), find("validate"));
        assert_eq!(name_and_service(cdc).1, "cartflow-cdc");
        assert_eq!(validate["parent_span_id"], cdc["span_id"], "{spans:?}");
        assert_eq!(validate["attributes"]["messaging.destination.name"], "tracking_postgres_cdc.public.events");
    }
}

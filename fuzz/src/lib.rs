//! What the fuzz targets share: frames given their checksums, and the
//! prediction server built once per process. `benches/fuzz.sh` runs the
//! targets (cargo-fuzz, libFuzzer); `examples/seeds.rs` writes their seed corpora.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use cartflow_core::{Rules, time};
use cartflow_features::FeatureSet;
use cartflow_http::{Limits, Scope, TokenConfig, Tokens};
use cartflow_model::{Encoding, Ensemble, InputFeature, Model, Node};
use cartflow_online::{Change, MemoryStore, OnlineStore};
use cartflow_serve::model::{ModelSlot, ModelSource, SourceError};
use cartflow_serve::{Server, Telemetry, app};
use tower::ServiceExt;

/// Rewrites the length-prefixed frames at the start of `bytes` with the
/// checksums they claim to have, so that the fuzzer reaches the frame's
/// fields instead of stopping at the checksum; what is left after the last
/// whole frame is kept as it is (a torn tail).
pub fn with_checksums(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut at = 0;
    while let Some(len) = out.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize) {
        let Some(end) = (at + 4).checked_add(len).filter(|&end| end <= out.len() && len >= 4) else {
            break;
        };
        let crc = crc32fast::hash(&out[at + 8..end]);
        out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
    out
}

/// A model over every kind of input, with splits on each.
pub fn model() -> Model {
    let inputs = vec![
        InputFeature { name: "price".into(), encoding: Encoding::Number },
        InputFeature { name: "session_views".into(), encoding: Encoding::Number },
        InputFeature { name: "brand".into(), encoding: Encoding::Number },
    ];
    let mut ensemble = Ensemble { base_score: -0.5, ..Ensemble::default() };
    let split = |feature, value| Node { feature, value, left: 1, right: 2, missing: 2 };
    ensemble.push_tree(&[split(0, 50.0), Node::leaf(-0.3), Node::leaf(0.4)]);
    ensemble.push_tree(&[split(1, 2.5), Node::leaf(0.1), Node::leaf(-0.2)]);
    Model::new(FeatureSet::V1, inputs, ensemble, 0.5)
}

struct OneModel;

impl ModelSource for OneModel {
    fn resolve(&self, _: &str, _: &str) -> Result<Option<String>, SourceError> {
        Ok(Some("1".into()))
    }

    fn model_file(&self, _: &str, _: &str) -> Result<Vec<u8>, SourceError> {
        Ok(model().to_json())
    }

    fn describe(&self) -> String {
        "the fuzz target's model".into()
    }
}

struct NoLake;

impl cartflow_serve::dashboard::Insights for NoLake {
    fn gold(&self) -> Result<Vec<cartflow_serve::dashboard::Table>, cartflow_serve::dashboard::InsightsError> {
        Err("no lake".into())
    }

    fn model_report(
        &self,
        _: &cartflow_serve::model::ServedModel,
    ) -> Result<cartflow_serve::dashboard::ModelReport, cartflow_serve::dashboard::InsightsError> {
        Err("no registry".into())
    }
}

pub const TOKEN: &str = "fuzz-token-0123456789abcdef";

/// `cartflow serve`'s router over an in-memory store holding a few sessions
/// of the real rows' shape, with a model loaded: what a request body meets.
pub fn server() -> &'static (tokio::runtime::Runtime, Router) {
    static SERVER: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let store = Arc::new(MemoryStore::new(cartflow_features::DEFAULT_SESSION_TTL));
        let start = time::parse_timestamp("2019-10-01 10:00:00 UTC").unwrap();
        let changes: Vec<_> = (0..40u64)
            .map(|i| {
                let line = format!(
                    "2019-10-01 10:{:02}:00 UTC,{},{},2053013555631882655,electronics.smartphone,apple,{}.5,{},s{}",
                    i % 60,
                    ["view", "cart", "purchase", "remove_from_cart"][i as usize % 4],
                    1000 + i % 5,
                    100 + i,
                    5 + i % 3,
                    i % 4
                );
                let raw = cartflow_core::RawEvent::from_csv_line(line.as_bytes()).unwrap();
                let event = cartflow_core::validate(&raw, &Rules::default()).unwrap();
                assert!(event.event_time >= start);
                Change { event, delete: false, partition: 0, offset: i }
            })
            .collect();
        store.apply(&changes, &[]).unwrap();
        let slot = Arc::new(ModelSlot::new("purchase_prediction_model", "champion"));
        slot.refresh(&OneModel).unwrap();
        let tokens = Tokens::new(&[TokenConfig {
            name: "fuzz".into(),
            token: TOKEN.into(),
            scopes: vec![Scope::Predict, Scope::FeaturesRead],
        }])
        .unwrap();
        let router = app(Server {
            store,
            model: slot,
            insights: Arc::new(NoLake),
            tokens: Arc::new(tokens),
            telemetry: Telemetry { metrics: Arc::new(String::new), status: Arc::new(|| serde_json::json!({})) },
            extra: None,
            limits: Limits::default(),
            predictions: None,
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        (rt, router)
    })
}

/// POSTs `body` to `route` of [`server`]; the status and the body's bytes.
pub fn post(route: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
    let (rt, router) = server();
    rt.block_on(async {
        let request = Request::post(route)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::from(body.to_vec()))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20).await.unwrap();
        (status, bytes.to_vec())
    })
}

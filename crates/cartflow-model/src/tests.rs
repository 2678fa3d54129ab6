use std::collections::BTreeMap;

use cartflow_features::{CartFeatures, FeatureSet};

use crate::trees::sigmoid;
use crate::{Encoding, Ensemble, InputFeature, Model, ModelError, Node};

fn split(feature: u32, value: f64, left: u32, right: u32, missing: u32) -> Node {
    Node { feature, value, left, right, missing }
}

/// Two inputs (price, brand); tree 1 splits on price at 100 (missing goes
/// right), tree 2 on the brand's rate at 0.5.
fn model() -> Model {
    let mut ensemble = Ensemble { base_score: -0.25, ..Ensemble::default() };
    ensemble.push_tree(&[split(0, 100.0, 1, 2, 2), Node::leaf(0.5), Node::leaf(-1.0)]);
    ensemble.push_tree(&[split(1, 0.5, 1, 2, 3), Node::leaf(-0.2), Node::leaf(0.7), Node::leaf(0.1)]);
    let rates = BTreeMap::from([("acme".to_owned(), 0.8), ("zeta".to_owned(), 0.1)]);
    let inputs = vec![
        InputFeature { name: "price".into(), encoding: Encoding::Number },
        InputFeature { name: "brand".into(), encoding: Encoding::PurchaseRate { prior: 0.4, rates } },
    ];
    Model::new(FeatureSet::V1, inputs, ensemble, 0.5)
}

fn cart(price: Option<f64>, brand: Option<&str>) -> CartFeatures {
    CartFeatures {
        price,
        brand: brand.map(str::to_owned),
        category_code_level1: None,
        category_code_level2: None,
        event_weekday: 2,
        activity_count: 3,
        event_hour: 10,
        session_views: 2,
        session_carts: 0,
        session_removals: 0,
        session_distinct_products: 1,
        session_duration_seconds: 30.0,
        product_views_in_session: 1,
        user_prior_sessions: 0,
        user_prior_carts: 0,
        user_prior_purchases: 0,
        product_prior_carts: 0,
        product_prior_purchases: 0,
        product_conversion_rate: 0.0,
    }
}

#[test]
fn scores_follow_the_splits_the_encodings_and_the_missing_branches() {
    let m = model();
    let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} != {b}");
    // cheap, known good brand: 0.5 + 0.7
    close(m.predict(&cart(Some(20.0), Some("acme"))), sigmoid(-0.25 + 0.5 + 0.7));
    // dear, known poor brand: -1.0 - 0.2
    close(m.predict(&cart(Some(500.0), Some("zeta"))), sigmoid(-0.25 - 1.0 - 0.2));
    // unseen brand takes the prior (0.4 < 0.5 → left)
    close(m.predict(&cart(Some(20.0), Some("new"))), sigmoid(-0.25 + 0.5 - 0.2));
    // no price, no brand: both missing branches
    close(m.predict(&cart(None, None)), sigmoid(-0.25 - 1.0 + 0.1));
    assert!(m.will_purchase(0.5) && !m.will_purchase(0.49));
}

#[test]
fn a_batch_scores_as_its_rows_do() {
    let m = model();
    let carts: Vec<CartFeatures> =
        (0..300).map(|i| cart((i % 7 != 0).then_some(i as f64), [Some("acme"), Some("zeta"), None][i % 3])).collect();
    let rows: Vec<f64> = carts.iter().flat_map(|c| m.encode(c)).collect();
    let batch = m.ensemble.predict_batch(&rows, 2);
    for (c, p) in carts.iter().zip(&batch) {
        assert_eq!(m.predict(c), *p);
    }
}

#[test]
fn the_model_file_round_trips_and_bad_files_are_named() {
    let m = model();
    let back = Model::from_json(&m.to_json()).unwrap();
    assert_eq!(back.ensemble, m.ensemble);
    assert_eq!(back.predict(&cart(Some(20.0), Some("acme"))), m.predict(&cart(Some(20.0), Some("acme"))));

    let mut json: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
    json["format"] = 99.into();
    let err = Model::from_json(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(matches!(err, ModelError::Format { found: 99 }), "{err}");

    let mut unknown = m.clone();
    unknown.inputs[1].name = "shoe_size".into();
    let err = Model::from_json(&unknown.to_json()).unwrap_err().to_string();
    assert!(err.contains("shoe_size"), "{err}");

    let mut looping = m.clone();
    looping.ensemble.nodes[0].left = 0;
    let err = Model::from_json(&looping.to_json()).unwrap_err().to_string();
    assert!(err.contains("node 0 has child 0"), "{err}");

    let mut out_of_range = m.clone();
    out_of_range.ensemble.nodes[3].feature = 5;
    let err = Model::from_json(&out_of_range.to_json()).unwrap_err().to_string();
    assert!(err.contains("splits on input 5 of 2"), "{err}");

    // No inputs: refused at load, never a panic when a request is scored.
    let mut blind = m;
    blind.inputs.clear();
    blind.ensemble = Ensemble { base_score: 0.1, roots: vec![0], nodes: vec![Node::leaf(0.2)] };
    let err = Model::from_json(&blind.to_json()).unwrap_err().to_string();
    assert!(err.contains("no inputs"), "{err}");
}

#[test]
fn rows_of_the_wrong_shape_are_an_error_not_a_panic() {
    let m = model();
    let scorer = crate::Scorer::new(&m.ensemble);
    assert!(scorer.predict_batch(&[1.0, 2.0, 3.0], 2).unwrap_err().contains("rows of 2"));
    assert!(scorer.predict_batch(&[], 0).is_err());
    assert_eq!(scorer.predict_batch(&[1.0, f64::NAN], 2).unwrap().len(), 1);
}

#[test]
fn the_batch_scorer_matches_the_reference_walk_on_random_trees() {
    use crate::random_trees;
    for (seed, depth) in [(1, 1), (2, 4), (3, 6), (4, 10)] {
        let ensemble = random_trees::ensemble(seed, 60, depth, 7);
        ensemble.check(7).unwrap();
        // Whole blocks, whole groups and a ragged tail (1003); rows walked
        // alone (1, 7); exactly one group (8).
        for n in [1003, 1, 7, 8] {
            let rows = random_trees::rows(seed + n as u64, n, 7);
            let batch = ensemble.predict_batch(&rows, 7);
            assert_eq!(batch.len(), n);
            for (row, p) in rows.chunks_exact(7).zip(&batch) {
                assert_eq!(ensemble.predict_row(row), *p, "depth {depth}, {n} rows");
            }
        }
    }
}

#[test]
fn a_node_with_two_parents_is_refused() {
    let mut shared = model();
    // Tree 1's right child becomes node 1 too: both sides lead to one leaf.
    shared.ensemble.nodes[0].right = 1;
    let err = Model::from_json(&shared.to_json()).unwrap_err().to_string();
    assert!(err.contains("node 0 sends both sides to node 1"), "{err}");

    let mut shared = model();
    // Tree 1 sends missing prices down tree 2's own missing branch (node 6).
    shared.ensemble.nodes[0].missing = 6;
    let err = Model::from_json(&shared.to_json()).unwrap_err().to_string();
    assert!(err.contains("node 6 has two parents (node 3 is the second)"), "{err}");
}

//! A model file (`model.json`) as `cartflow serve` loads it from the
//! registry: what loads scores a cart to a probability.
#![no_main]

use cartflow_features::CartFeatures;
use cartflow_model::Model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_json(data) else { return };
    let cart = CartFeatures {
        price: Some(35.5),
        brand: Some("apple".into()),
        category_code_level1: Some("electronics".into()),
        category_code_level2: None,
        event_weekday: 2,
        activity_count: 7,
        event_hour: 10,
        session_views: 3,
        session_carts: 1,
        session_removals: 0,
        session_distinct_products: 2,
        session_duration_seconds: 120.0,
        product_views_in_session: 2,
        user_prior_sessions: 1,
        user_prior_carts: 0,
        user_prior_purchases: 0,
        product_prior_carts: 4,
        product_prior_purchases: 1,
        product_conversion_rate: 0.25,
    };
    let p = model.predict(&cart);
    assert!((0.0..=1.0).contains(&p), "a probability of {p}");
});

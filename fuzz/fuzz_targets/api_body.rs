//! Request bodies of `/predict`, `/features` and Feast's
//! `/get-online-features` (the first byte picks the route), through the
//! real router: bad input is a 4xx with a JSON error, never a 5xx.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let route = ["/predict", "/features", "/get-online-features"][pick as usize % 3];
    let (status, answer) = cartflow_fuzz::post(route, body);
    assert!(!status.is_server_error(), "{route} answered {status}: {}", String::from_utf8_lossy(&answer));
    if !status.is_success() {
        let error: serde_json::Value = serde_json::from_slice(&answer).expect("errors are JSON");
        assert!(error["error"].is_string(), "{error}");
    }
});

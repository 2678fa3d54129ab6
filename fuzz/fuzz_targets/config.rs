//! The configuration file (`cartflow.toml`) over the defaults, and what
//! commands derive from it before they start.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    let Ok(config) = cartflow_config::Config::from_toml(text) else { return };
    let _ = config.embedded_log.options();
    let _ = config.serve.limits();
    let _ = config.features.session_ttl();
    let _ = config.lake_location();
});

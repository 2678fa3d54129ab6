//! The MLflow search syntax the registry takes: a `filter` string and
//! `order_by` clauses (one per line here).
#![no_main]

use cartflow_registry::filter;

libfuzzer_sys::fuzz_target!(|s: &str| {
    let (filter, order_by) = s.split_once('\n').unwrap_or((s, ""));
    let _ = filter::parse(filter);
    let order_by: Vec<String> = order_by.lines().map(str::to_owned).collect();
    let _ = filter::order_keys(&order_by);
});

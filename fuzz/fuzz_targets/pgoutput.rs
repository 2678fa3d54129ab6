//! One message of PostgreSQL's logical replication stream (pgoutput), as
//! `cartflow cdc` decodes it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match cartflow_cdc::pgoutput::decode(data) {
        Ok(message) => drop(format!("{message:?}")),
        Err(e) => drop(e.to_string()),
    }
});

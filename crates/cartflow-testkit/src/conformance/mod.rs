//! One suite per backend trait, run against every backend of it (as
//! `quickwit-storage`'s `storage_test_suite` is): what the stages rely on,
//! asserted the same way on the embedded log and Kafka, on the memory store
//! and Redis. A backend that passes can stand in for another.

mod event_log;
mod online_store;

pub use event_log::{Keeps, event_log_suite};
pub use online_store::{assert_one_state_of, assert_one_state_of_changes, online_store_suite};

//! What cartflow's tests share, so each crate's tests use the same real
//! services and the same checks (as `quickwit-storage`'s test suite and
//! Vector's `test_util` do):
//!
//! - [`services`]: a real S3 server, Kafka broker, PostgreSQL database and
//!   Redis key prefix per test, on loopback, removed when dropped, so tests
//!   run in parallel and leave nothing; [`redis_cluster`], a three-node
//!   Redis Cluster of its own; [`postgres_server`], a PostgreSQL server of
//!   its own to stop and start;
//! - [`tools`]: finding what a test needs; in CI a missing tool fails the
//!   test, elsewhere the test is skipped with a message saying what to install;
//! - [`exactly_once`]: every raw record in validated ∪ invalid exactly once;
//! - [`conformance`]: one suite per backend trait (`EventLog`,
//!   `OnlineStore`), run against every backend.

pub mod conformance;
pub mod exactly_once;
pub mod postgres_server;
pub mod redis_cluster;
pub mod services;
pub mod tools;

pub use exactly_once::{assert_each_input_once, assert_exactly_once_on, read_all};
pub use postgres_server::PostgresServer;
pub use redis_cluster::RedisCluster;
pub use services::{
    CaptureSource, KafkaBroker, RedisPrefix, RedisServer, S3Server, TestDatabase, free_port, psql, wait_for_port,
};
pub use tools::{command, in_ci, python_modules, tool};

/// Unwraps what a test needs, or ends the test (skipped; [`tools`] has said why).
#[macro_export]
macro_rules! needs {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return,
        }
    };
}

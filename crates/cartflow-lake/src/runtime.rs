//! The process's one Tokio runtime, for code that blocks on async I/O from
//! ordinary threads: the lake's object-store calls, the warehouse's
//! DataFusion queries, the servers and the registry's pools. Here because
//! the lake is the lowest crate that does async I/O; the others depend on it.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// Made on first use, a worker per core. Call `block_on` from ordinary
/// threads (and `spawn_blocking` closures), never from a task on it.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("cartflow-io")
            .enable_all()
            .build()
            .expect("starting the Tokio runtime")
    })
}

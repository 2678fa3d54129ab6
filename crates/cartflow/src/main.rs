//! `cartflow`: the one binary. Its library ([`cartflow`]) parses the
//! command line, loads the layered configuration, opens the configured
//! backends and runs a command; this file picks the allocator.

use std::process::ExitCode;

/// Every record passes through a few short-lived allocations on several
/// threads; mimalloc does those markedly faster than glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cartflow::allocator::tune();
    cartflow::main()
}

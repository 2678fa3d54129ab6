//! How the binaries tune mimalloc, their global allocator (each binary
//! declares `#[global_allocator] static GLOBAL: mimalloc::MiMalloc`).

/// mimalloc by default keeps freed pages for a while and commits whole
/// arenas up front. DataFusion's scans free as fast as they allocate, on
/// many threads, and the warehouse's build held gigabytes it no longer used
/// (a month of events: 5.0–8.0 GB peak). Committing on demand and returning
/// freed pages at once took the month to 2.2–2.6 GB, for no time on one
/// machine and about 15 % on another (docs/benchmarks.md).
pub fn tune() {
    // Numbers of mimalloc v3's `mi_option_e` (mimalloc.h), which
    // libmimalloc-sys does not name.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // mimalloc's own variables, when set, win: they are how a user (or a
    // benchmark) tries other values without a rebuild.
    for (option, var, value) in
        [(ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0), (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 0)]
    {
        if std::env::var_os(var).is_none() {
            // SAFETY: a plain setter of mimalloc's global options, valid at any time.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}

//! Raw OS measurements for the benchmark harness (`benches/mp.rs`), which
//! sets multiproc beside the physical limits in the same run. Not part of
//! the API: it may change or go at any time.

/// `fork()` a child that exits at once, and wait for it.
pub fn raw_fork_and_wait() -> std::io::Result<()> {
    crate::sys::raw_fork_and_wait()
}

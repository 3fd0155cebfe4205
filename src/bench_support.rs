//! Raw OS measurements for the benchmark harness (`benches/mp.rs`), which
//! sets multiproc beside the physical limits in the same run. Not part of
//! the API: it may change or go at any time.

/// `fork()` a child that exits at once, and wait for it.
pub fn raw_fork_and_wait() -> std::io::Result<()> {
    crate::sys::raw_fork_and_wait()
}

/// A global allocator that notes each thread's largest request, for tests
/// that bound allocations: `#[global_allocator] static A: CountingAlloc =
/// CountingAlloc;`, then [`largest_allocation`].
pub use crate::sys::{CountingAlloc, largest_allocation};

//! Leaving a process: C stdio, `atexit`, `_exit`.

/// `fflush(NULL)`: writes out every C stdio buffer, so that a forked child
/// does not print the parent's pending output a second time, and a child
/// that leaves through `_exit` loses nothing.
pub(crate) fn flush_c_stdio() {
    // SAFETY: `fflush(NULL)` flushes all open C streams; it takes glibc's
    // stream locks, which glibc keeps consistent across fork.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// `_exit(code)`: ends the process now, without running `atexit` handlers
/// or destructors. Callers flush what must be flushed first.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions.
    unsafe { libc::_exit(code) }
}

/// `atexit(f)`: runs `f` when the process exits normally (returning from
/// `main` or `std::process::exit`).
pub(crate) fn at_exit(f: extern "C" fn()) -> bool {
    // SAFETY: `f` is a plain `extern "C" fn()` that lives for the whole
    // program.
    unsafe { libc::atexit(f) == 0 }
}

//! Environment changes made while the process is known to be single-threaded.

use std::ffi::OsStr;

/// Removes `key` from the environment.
///
/// Only called from the bootstrap constructor, before `main`, or in a
/// freshly forked child: no other thread exists to read the environment
/// concurrently.
pub(crate) fn remove_var(key: &str) {
    // SAFETY: single-threaded at this point (see above), which is the
    // precondition of `std::env::remove_var`.
    unsafe { std::env::remove_var(key) }
}

/// Sets `key` to `value`, under the same single-thread rule as `remove_var`.
pub(crate) fn set_var(key: &OsStr, value: &OsStr) {
    // SAFETY: single-threaded at this point (see `remove_var`).
    unsafe { std::env::set_var(key, value) }
}

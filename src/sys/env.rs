//! Environment changes in a child, made without the locks another thread
//! of the parent might have held at `fork()` time.

use std::ffi::{CString, c_char};
use std::os::unix::ffi::OsStrExt;

/// Removes `key` from the environment.
///
/// Only called from the bootstrap constructor, before `main`: no other
/// thread exists yet to read the environment concurrently.
pub(crate) fn remove_var(key: &str) {
    // SAFETY: single-threaded at this point (see above), which is the
    // precondition of `std::env::remove_var`.
    unsafe { std::env::remove_var(key) }
}

/// A complete environment, built ahead of time and installed later by
/// swapping the `environ` pointer.
///
/// A forked child of a multithreaded parent must not touch std's
/// environment lock (another thread may have held it at the moment of the
/// fork), so the parent builds the new environment before forking and the
/// child only installs it.
#[derive(Debug)]
pub(crate) struct Environ {
    _entries: Vec<CString>,
    ptrs: Vec<*mut c_char>,
}

// SAFETY: the pointers point into `_entries`, owned by the same value and
// never mutated; moving the value between threads moves the strings too.
unsafe impl Send for Environ {}

impl Environ {
    /// The current environment plus `additions` (which override), or
    /// `None` when there is nothing to add.
    pub(crate) fn with_additions(additions: &[(Vec<u8>, Vec<u8>)]) -> Option<Environ> {
        if additions.is_empty() {
            return None;
        }
        let mut entries: Vec<CString> = Vec::new();
        for (key, value) in std::env::vars_os() {
            if additions.iter().any(|(k, _)| k.as_slice() == key.as_bytes()) {
                continue;
            }
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            entries.extend(CString::new(entry).ok());
        }
        for (key, value) in additions {
            let mut entry = key.clone();
            entry.push(b'=');
            entry.extend_from_slice(value);
            entries.extend(CString::new(entry).ok());
        }
        let mut ptrs: Vec<*mut c_char> = entries.iter().map(|e| e.as_ptr().cast_mut()).collect();
        ptrs.push(std::ptr::null_mut());
        Some(Environ { _entries: entries, ptrs })
    }

    /// Makes this the process's environment, for the rest of its life.
    /// Called in a freshly started child, which is single-threaded.
    pub(crate) fn install(self) {
        let this = Box::leak(Box::new(self));
        // SAFETY: the process is single-threaded here (a fresh child), so
        // nothing reads `environ` concurrently; the array is NUL-terminated
        // and every entry is a NUL-terminated `KEY=value` string; both are
        // leaked, so they live for the rest of the process. The old array is
        // left in place (it may be inherited memory).
        unsafe { environ = this.ptrs.as_mut_ptr() };
    }
}

unsafe extern "C" {
    static mut environ: *mut *mut c_char;
}

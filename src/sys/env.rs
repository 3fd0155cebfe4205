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

/// Adds (or overrides) `additions` in this process's environment by
/// installing a new `environ` array.
///
/// Called in a child before its task runs, which may be a fork of a
/// multithreaded parent: `std::env::set_var` takes std's environment
/// write lock, and a thread of the parent that was reading the
/// environment at the moment of the fork left that lock read-held forever
/// in the child. Reading the current environment takes the read side
/// only, and the new array is swapped in without any lock. The old array
/// and strings are left in place (they may be inherited memory), and the
/// new ones live for the rest of the process.
pub(crate) fn extend_environ(additions: &[(Vec<u8>, Vec<u8>)]) {
    if additions.is_empty() {
        return;
    }
    let mut entries: Vec<CString> = Vec::new();
    for (key, value) in std::env::vars_os() {
        if additions
            .iter()
            .any(|(k, _)| k.as_slice() == key.as_bytes())
        {
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
    let entries: &'static [CString] = Vec::leak(entries);
    let mut ptrs: Vec<*mut c_char> = entries.iter().map(|e| e.as_ptr().cast_mut()).collect();
    ptrs.push(std::ptr::null_mut());
    let ptrs: &'static mut [*mut c_char] = Vec::leak(ptrs);
    // SAFETY: this process is single-threaded here (a fresh child), so no
    // one reads `environ` concurrently; the array is NUL-terminated, every
    // entry is a NUL-terminated `KEY=value` string, and both live for the
    // rest of the process (leaked above).
    unsafe { libc_environ_set(ptrs.as_mut_ptr()) };
}

unsafe extern "C" {
    static mut environ: *mut *mut c_char;
}

/// Assigns `environ`.
///
/// # Safety
///
/// `new` must be a valid NUL-terminated array of `KEY=value` C strings
/// that lives for the rest of the process, and no other thread may touch
/// the environment.
unsafe fn libc_environ_set(new: *mut *mut c_char) {
    // SAFETY: guaranteed by the caller.
    unsafe { environ = new };
}

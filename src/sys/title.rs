//! Process titles, so that children show in `ps` and `top`.

use std::ffi::CString;
use std::sync::OnceLock;

/// Shows `title` for this process: as its `comm` (`PR_SET_NAME`, what `top`
/// and `ps -o comm` print, cut to 15 bytes) and in its command line (what
/// `ps aux` prints), by overwriting the original argv area in place, cut to
/// that area's size.
pub(crate) fn set_title(title: &str) {
    let clean: String = title.chars().filter(|&c| c != '\0').collect();
    let comm: Vec<u8> = clean.bytes().take(15).collect();
    if let Ok(comm) = CString::new(comm) {
        let _ = rustix::thread::set_name(&comm);
    }
    if let Some((start, end)) = argv_area() {
        overwrite_argv(start, end, clean.as_bytes());
    }
}

/// Finds the argv area now, so that a forked child, which inherits the
/// answer with the memory, does not read /proc again (a third of the cost
/// of a fork child's start-up).
pub(crate) fn prepare_title() {
    let _ = argv_area();
}

/// The argv area of this process, read once. It moves only with `exec`,
/// after which this static starts empty again.
fn argv_area() -> Option<(usize, usize)> {
    static AREA: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    *AREA.get_or_init(read_argv_area)
}

/// `arg_start` and `arg_end` from `/proc/self/stat` (fields 48 and 49).
fn read_argv_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let start: usize = fields.get(45)?.parse().ok()?;
    let end: usize = fields.get(46)?.parse().ok()?;
    (end > start && start != 0).then_some((start, end))
}

fn overwrite_argv(start: usize, end: usize, title: &[u8]) {
    let len = end - start;
    let n = title.len().min(len - 1);
    // SAFETY: `start..end` is this process's own argv string area, mapped
    // read-write on the initial stack for the life of the process (the
    // kernel reports it in /proc/self/stat). Rust's std reads argv only
    // through the `argv` pointers, which still point into this area at
    // NUL-terminated strings after the write. Nothing holds a Rust
    // reference into it.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
        area[..n].copy_from_slice(&title[..n]);
        area[n..].fill(0);
    }
}

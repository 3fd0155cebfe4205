//! Process titles, so that children show in `ps` and `top`.

use std::ffi::CString;
use std::sync::OnceLock;

/// Shows `title` for this process: as its `comm` (`PR_SET_NAME`, what `top`
/// and `ps -o comm` print, cut to 15 bytes), and in its command line (what
/// `ps aux` prints) by overwriting `argv[0]` in place, cut to the length the
/// original `argv[0]` had. The other arguments stay as they are, so
/// `std::env::args()` in a child is the title followed by the parent's
/// arguments.
#[doc(alias("prctl", "PR_SET_NAME", "setproctitle"))]
pub(crate) fn set_title(title: &str) {
    let clean: Vec<u8> = title.bytes().filter(|&b| b != 0).collect();
    if let Ok(comm) = CString::new(clean.iter().copied().take(15).collect::<Vec<u8>>()) {
        let _ = rustix::thread::set_name(&comm);
    }
    if let Some((start, len)) = argv0_area() {
        overwrite_argv0(start, len, &clean);
    }
}

/// Finds the `argv[0]` area now, so that a forked child, which inherits the
/// answer with the memory, does not read /proc again (a third of the cost
/// of a fork child's start-up).
pub(crate) fn prepare_title() {
    let _ = argv0_area();
}

/// Where `argv[0]` lives and how long it is (without its NUL), read once.
/// It moves only with `exec`, after which this static starts empty again.
fn argv0_area() -> Option<(usize, usize)> {
    static AREA: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    *AREA.get_or_init(read_argv0_area)
}

/// `arg_start` and `arg_end` from `/proc/self/stat` (fields 48 and 49), and
/// the length of the first string there.
fn read_argv0_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let start: usize = fields.get(45)?.parse().ok()?;
    let end: usize = fields.get(46)?.parse().ok()?;
    if end <= start || start == 0 {
        return None;
    }
    // SAFETY: `start..end` is this process's argv string area, mapped
    // readable on the initial stack for the life of the process, as the
    // kernel reports it in /proc/self/stat.
    let area = unsafe { std::slice::from_raw_parts(start as *const u8, end - start) };
    let len = area.iter().position(|&b| b == 0)?;
    (len > 0).then_some((start, len))
}

fn overwrite_argv0(start: usize, len: usize, title: &[u8]) {
    let n = title.len().min(len);
    // SAFETY: `start..start + len` is the original `argv[0]` string (without
    // its NUL), in this process's argv area, mapped read-write on the
    // initial stack for the life of the process. std reads argv only
    // through its saved `argv` pointers: `argv[0]` still points at a
    // NUL-terminated string after the write (the title, NUL-padded), and
    // the other arguments are untouched. Nothing holds a Rust reference
    // into the area.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
        area[..n].copy_from_slice(&title[..n]);
        area[n..].fill(0);
    }
}

//! POSIX shared memory by name (`shm_open`), whole-file mappings handed out
//! as byte slices, and the process plumbing of the shared-memory tracker
//! (a detached helper that watches its creator through a pidfd).

use std::ffi::CString;
use std::io;
use std::ptr::NonNull;

use rustix::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use rustix::mm::{MapFlags, ProtFlags};

/// What tells one file from another while both exist: device and inode.
/// A name in /dev/shm can be unlinked and created again; the inode says
/// whether it still names the same segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// The identity and length of the file behind `fd` (`fstat`).
pub(crate) fn file_id(fd: BorrowedFd<'_>) -> io::Result<(FileId, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((FileId { dev: st.st_dev as u64, ino: st.st_ino as u64 }, st.st_size as u64))
}

/// Whether the raw fd number `fd` is open on the file `id`: for an fd
/// inherited over a `fork` that may or may not have been closed since
/// (its number may even belong to another file now).
pub(crate) fn raw_fd_is(fd: RawFd, id: FileId) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fstat` writes a whole `stat` into the buffer on success and
    // touches nothing else; a closed number only gives EBADF, since an fd
    // number is not memory.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: `fstat` returned 0, so it initialised the buffer.
    let st = unsafe { st.assume_init() };
    st.st_dev == id.dev && st.st_ino == id.ino
}

/// `"/" + name`, as `shm_open` wants it. The caller has checked the name.
fn c_name(name: &str) -> io::Result<CString> {
    CString::new(format!("/{name}")).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn shm_open_flags(name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = c_name(name)?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call. glibc
    // adds O_NOFOLLOW and O_CLOEXEC; the result is a new fd or -1.
    let fd = unsafe { libc::shm_open(c.as_ptr(), flags, 0o600) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by `shm_open`; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600)`: a new, empty segment;
/// `AlreadyExists` if the name is taken.
pub(crate) fn shm_create(name: &str) -> io::Result<OwnedFd> {
    shm_open_flags(name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL)
}

/// `shm_open(name, O_RDWR)` (or `O_RDONLY`) of an existing segment.
pub(crate) fn shm_open(name: &str, writable: bool) -> io::Result<OwnedFd> {
    shm_open_flags(name, if writable { libc::O_RDWR } else { libc::O_RDONLY })
}

/// `shm_unlink(name)`.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    if unsafe { libc::shm_unlink(c.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ftruncate(fd, len)`.
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, len)?)
}

/// The bytes still free on the file system of `fd` (`fstatvfs`), or `None`
/// if it reports no limit (a tmpfs mounted with `size=0`).
pub(crate) fn free_bytes(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    let st = rustix::fs::fstatvfs(fd)?;
    if st.f_blocks == 0 {
        return Ok(None);
    }
    Ok(Some(st.f_bavail.saturating_mul(st.f_frsize)))
}

/// A `MAP_SHARED` read-write mapping of the first `len` bytes of a file,
/// handed out as byte slices.
///
/// The bytes are shared with every other mapping of the file, in this
/// process or another, and any of them may write at any time: the public
/// type that owns a `SharedMap` documents that its users coordinate
/// (with a lock), as with every shared mapping.
#[derive(Debug)]
pub(crate) struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is memory that no thread-local state refers to; it
// may be unmapped from any thread, and `&SharedMap` only gives shared
// byte slices.
unsafe impl Send for SharedMap {}
// SAFETY: as above; mutation needs `&mut SharedMap`.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps the first `len` bytes (more than zero) of `fd`, read-write and
    /// shared. The file must be at least `len` bytes long, or touching the
    /// part past its end raises SIGBUS.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<SharedMap> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a fresh mapping at an address the kernel picks; it
        // aliases no Rust object, and only `Drop` unmaps it.
        let ptr = unsafe {
            rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, fd, 0)?
        };
        Ok(SharedMap { ptr: NonNull::new(ptr.cast()).expect("mmap never returns null on success"), len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is a live read-write mapping made by
        // `new` and unmapped only when `self` drops, which the borrow
        // prevents. Writes by other mappings of the same file (in other
        // processes, or other `SharedMap`s here) are the documented
        // shared-memory contract of the public type: its users coordinate
        // them, as with any shared mapping.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The mapped bytes, writable.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `bytes`; `&mut self` makes this the only slice of
        // this mapping alive in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made by `new`, unmapped once; no slice of it
        // outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A pidfd for this process's parent, if the parent is still `expected`.
///
/// The pidfd is opened first and the parent checked after: a live
/// process's pid cannot be reused, so if `expected` is still the parent
/// after the open, the pidfd refers to it. `None` means the parent has
/// already died.
pub(crate) fn parent_pidfd(expected: i32) -> io::Result<Option<OwnedFd>> {
    let parent = || rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    if parent() != expected {
        return Ok(None);
    }
    let fd = super::pidfd_open(expected)?;
    Ok((parent() == expected).then_some(fd))
}

/// Turns this freshly exec'd, single-threaded process into a detached
/// helper: it forks, and the original process exits (its parent reaps it
/// at once), so the helper is adopted by init (or the nearest subreaper),
/// which reaps it when it ends; no process that uses multiproc ever has it
/// as a child, so it can never be left a zombie there. Then, in the
/// helper: a new session (signals sent to the user's process group or
/// terminal do not reach it), SIGINT, SIGTERM, SIGHUP and SIGPIPE ignored,
/// stdin and stdout on /dev/null (so that it holds no pipe a caller reads
/// to its end), stderr kept for its warnings, and `/` as its directory.
pub(crate) fn detach() -> io::Result<()> {
    match super::fork()? {
        super::Forked::Parent(_) => super::exit_now(0),
        super::Forked::Child => {}
    }
    let _ = rustix::process::setsid();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: a fully initialised sigaction (zeroed, then SIG_IGN);
        // ignoring a signal has no memory-safety preconditions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_IGN;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(&null)?;
    let _ = rustix::process::chdir("/");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::{AsFd, AsRawFd};

    fn unique(tag: &str) -> String {
        let mut r = [0u8; 6];
        super::super::random_bytes(&mut r).unwrap();
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        format!("multiproc-unit-{tag}-{hex}")
    }

    #[test]
    fn a_named_segment_is_created_once_opened_shared_and_unlinked() {
        let name = unique("seg");
        let fd = shm_create(&name).unwrap();
        assert_eq!(shm_create(&name).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        set_len(fd.as_fd(), 4096).unwrap();
        let mut a = SharedMap::new(fd.as_fd(), 4096).unwrap();
        let other = shm_open(&name, true).unwrap();
        let (id, len) = file_id(other.as_fd()).unwrap();
        assert_eq!((id, len), file_id(fd.as_fd()).unwrap());
        assert!(raw_fd_is(other.as_raw_fd(), id));
        let b = SharedMap::new(other.as_fd(), 4096).unwrap();
        a.bytes_mut()[10..13].copy_from_slice(b"abc");
        assert_eq!(&b.bytes()[10..13], b"abc");
        assert_eq!(b.len(), 4096);
        shm_unlink(&name).unwrap();
        assert_eq!(shm_open(&name, false).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(shm_unlink(&name).unwrap_err().kind(), io::ErrorKind::NotFound);
        let raw = other.as_raw_fd();
        drop(other);
        assert!(!raw_fd_is(raw, id), "a closed number no longer names the segment");
        assert!(free_bytes(fd.as_fd()).is_ok());
    }

    #[test]
    fn an_empty_mapping_is_refused() {
        let fd = super::super::memfd("test", 0).unwrap();
        assert!(SharedMap::new(fd.as_fd(), 0).is_err());
    }
}

//! File descriptors: pipes, eventfds, reads and writes, polling, closing,
//! and what `fstat` and `ftruncate` say and do about the file behind one.

use std::io;
use std::time::Duration;

use rustix::event::{EventfdFlags, Timespec, epoll};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use rustix::io::Errno;

pub(crate) use rustix::event::{PollFd, PollFlags};

/// `pipe2(O_CLOEXEC)`: (read end, write end).
#[doc(alias("pipe2"))]
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// `dup2(fd, 1)`: this process's stdout becomes `fd`.
#[doc(alias("dup2", "STDOUT_FILENO"))]
pub(crate) fn dup_onto_stdout(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::stdio::dup2_stdout(fd)?)
}

/// `dup2(fd, 2)`: this process's stderr becomes `fd`.
#[doc(alias("dup2", "STDERR_FILENO"))]
pub(crate) fn dup_onto_stderr(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::stdio::dup2_stderr(fd)?)
}

/// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    Ok(rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?)
}

/// `ioctl(FIONBIO)`: switches `O_NONBLOCK` on or off.
#[doc(alias("ioctl", "FIONBIO", "O_NONBLOCK"))]
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, on)?)
}

/// Whether `e` says the process (`EMFILE`) or the system (`ENFILE`) has
/// no file descriptor left to give.
pub(crate) fn is_out_of_fds(e: &io::Error) -> bool {
    let raw = e.raw_os_error();
    raw == Some(Errno::MFILE.raw_os_error()) || raw == Some(Errno::NFILE.raw_os_error())
}

/// `read(2)`, retried on `EINTR`. `Ok(0)` is end of file.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    loop {
        let spare = &mut buf.spare_capacity_mut()[..max];
        match rustix::io::read(fd, spare) {
            Ok((init, _)) => {
                let n = init.len();
                extend_len(buf, n);
                return Ok(n);
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Grows `buf`'s length over `n` bytes that a syscall just initialised.
fn extend_len(buf: &mut Vec<u8>, n: usize) {
    let new_len = buf.len() + n;
    assert!(new_len <= buf.capacity(), "read past the reserved capacity");
    // SAFETY: the caller's `read` wrote `n` bytes into the spare capacity
    // starting at `len`, so `0..new_len` is initialised, and `new_len` is
    // within the capacity (checked above).
    unsafe { buf.set_len(new_len) };
}

/// `write(2)` until all of `bytes` is written, retrying on `EINTR`.
#[doc(alias("write"))]
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn timespec(d: Duration) -> Timespec {
    Timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as i64, tv_nsec: d.subsec_nanos() as _ }
}

/// `poll(2)` with an optional timeout. An interrupted poll counts as a
/// timeout with nothing ready; callers loop on their own deadline.
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    let ts = timeout.map(timespec);
    match rustix::event::poll(fds, ts.as_ref()) {
        Ok(n) => Ok(n),
        Err(Errno::INTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// An epoll instance: many fds watched for input at once, each known by a
/// token. Level-triggered, so an fd that stays readable is reported again
/// at every wait; the epoll fd itself polls readable while any is ready.
#[doc(alias("epoll_create1", "epoll_ctl", "epoll_wait"))]
#[derive(Debug)]
pub(crate) struct Poller {
    fd: OwnedFd,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        Ok(Poller { fd: epoll::create(epoll::CreateFlags::CLOEXEC)? })
    }

    /// Watches `fd` for input, end of file and hang-ups, as `token`.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        Ok(epoll::add(&self.fd, fd, epoll::EventData::new_u64(token), flags)?)
    }

    /// Stops watching `fd`.
    pub(crate) fn remove(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(epoll::delete(&self.fd, fd)?)
    }

    /// Waits up to `timeout` (`None`: no limit) and puts the tokens of the
    /// ready fds in `ready` (emptied first; at most 256 per wait). An
    /// interrupted wait returns none.
    pub(crate) fn wait(&self, timeout: Option<Duration>, ready: &mut Vec<u64>) -> io::Result<()> {
        ready.clear();
        let ts = timeout.map(timespec);
        let mut events = Vec::with_capacity(256);
        match epoll::wait(&self.fd, rustix::buffer::spare_capacity(&mut events), ts.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        ready.extend(events.iter().map(|e| e.data.u64()));
        Ok(())
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Points the fd number at `/dev/null` (`dup3`), dropping this process's
/// reference to what it was open on, while the number stays valid for
/// whoever still holds it: Python's `close()` of a connection whose fd
/// Rust code may still borrow.
#[doc(alias("dup3"))]
pub(crate) fn retire(fd: BorrowedFd<'_>) -> io::Result<()> {
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    // SAFETY: both fds are open (`null` is owned here, `fd` borrowed for
    // the call); dup3 atomically replaces `fd`'s open file with /dev/null
    // and keeps the number open, so no borrower sees it closed or reused.
    let rc = unsafe { libc::dup3(null.as_raw_fd(), fd.as_raw_fd(), libc::O_CLOEXEC) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Closes every fd from 3 up except `keep` (`close_range`), in a freshly
/// forked child that serves on `keep` alone.
#[doc(alias("close_range"))]
pub(crate) fn close_all_except(keep: RawFd) {
    // SAFETY: `close_range` on numbers this process owns; it is called
    // right after fork in a child that forgets every Rust owner of those
    // fds (it never returns to the code that owned them).
    unsafe {
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, (keep - 1) as libc::c_uint, 0 as libc::c_uint);
        }
        libc::syscall(libc::SYS_close_range, (keep.max(2) + 1) as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_uint);
    }
}

/// Takes ownership of an fd this process inherited at a known number
/// (fd 3 in a re-exec'd child, or a handle's fd in a fork child whose
/// owning structure, a copy of the parent's, is never dropped).
pub(crate) fn take_inherited(fd: RawFd) -> OwnedFd {
    // SAFETY: callers take each number once, and nothing else in this
    // process owns it (the bootstrap's fd 3, placed by `spawn_exec`; a fork
    // child's copies of the parent's owners, which it never drops).
    unsafe { <OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(fd) }
}

/// `close(fd)` of a raw descriptor whose owning structure has been forgotten
/// (in a freshly forked child).
#[doc(alias("close"))]
pub(crate) fn close_raw(fd: RawFd) {
    if fd < 0 {
        return;
    }
    // SAFETY: the caller forgot every Rust owner of `fd` (it is a copy
    // inherited over fork), so closing it cannot cause a double close.
    drop(unsafe { <OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(fd) });
}

/// [`close_raw`] of many descriptors, in a freshly forked child: one
/// `close_range` per run of consecutive numbers (negative numbers are
/// skipped). A fork child closes its parent's internal fds, two or three
/// per child the parent has running, and one syscall each made every start
/// slower by about half a microsecond per child alive.
#[doc(alias("close_range"))]
pub(crate) fn close_raw_all(mut fds: Vec<RawFd>) {
    fds.retain(|&fd| fd >= 0);
    fds.sort_unstable();
    fds.dedup();
    let mut rest = &fds[..];
    while let Some(&first) = rest.first() {
        let run = rest.iter().zip(first..).take_while(|&(&fd, want)| fd == want).count();
        rest = &rest[run..];
        let last = first + (run as RawFd - 1);
        // SAFETY: the caller forgot every Rust owner of these fds (copies
        // inherited over fork), so closing them cannot cause a double
        // close; every number from `first` to `last` is one of them.
        let rc = unsafe {
            libc::syscall(libc::SYS_close_range, first as libc::c_uint, last as libc::c_uint, 0 as libc::c_uint)
        };
        if rc != 0 {
            // Before Linux 5.9: one close each.
            (first..=last).for_each(close_raw);
        }
    }
}

/// What tells one file from another while both exist: device and inode.
/// A name in /dev/shm can be unlinked and created again; the inode says
/// whether it still names the same segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// The identity and length of the file behind `fd` (`fstat`).
#[doc(alias("fstat"))]
pub(crate) fn file_id(fd: BorrowedFd<'_>) -> io::Result<(FileId, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((FileId { dev: st.st_dev as u64, ino: st.st_ino as u64 }, st.st_size as u64))
}

/// Whether the raw fd number `fd` is open on the file `id`: for an fd
/// inherited over a `fork` that may or may not have been closed since
/// (its number may even belong to another file now).
#[doc(alias("fstat"))]
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

/// The size of the file behind `fd`.
#[doc(alias("fstat"))]
pub(crate) fn file_len(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// `ftruncate(fd, len)`.
#[doc(alias("ftruncate"))]
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, len)?)
}

/// `pread`: the `len` bytes of the file behind `fd` from `offset` (fewer
/// if the file ends first), whatever the fd's own position.
#[doc(alias("pread", "pread64"))]
pub(crate) fn read_file_at(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let (at, want) = (offset + out.len() as u64, len - out.len());
        let spare = &mut out.spare_capacity_mut()[..want];
        match rustix::io::pread(fd, spare, at) {
            Ok(([], _)) => break,
            Ok((init, _)) => {
                let n = init.len();
                extend_len(&mut out, n);
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// The size of a memory page (`sysconf(_SC_PAGESIZE)`).
#[doc(alias("sysconf", "_SC_PAGESIZE", "getpagesize"))]
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

/// Grows the file behind `fd` to `len` bytes (never shrinks it).
#[doc(alias("ftruncate"))]
pub(crate) fn grow_file(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    if file_len(fd)? < len {
        rustix::fs::ftruncate(fd, len)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    #[test]
    fn zero_timeout_poll_does_not_block() {
        let (r, _w) = pipe().unwrap();
        let mut fds = [PollFd::new(&r, PollFlags::IN)];
        assert_eq!(poll(&mut fds, Some(Duration::ZERO)).unwrap(), 0);
    }

    #[test]
    fn a_pipe_carries_bytes_and_reads_append() {
        let (r, w) = pipe().unwrap();
        write_all(w.as_fd(), b"world").unwrap();
        let mut buf = b"hello ".to_vec();
        assert_eq!(read(r.as_fd(), &mut buf, 64).unwrap(), 5);
        assert_eq!(buf, b"hello world");
        drop(w);
        assert_eq!(read(r.as_fd(), &mut buf, 64).unwrap(), 0);
    }
}

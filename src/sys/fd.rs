//! Sockets, pipes, polling and fd passing.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::time::Duration;

use rustix::event::{EventfdFlags, Timespec};
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketFlags, SocketType,
};

pub(crate) use rustix::event::{PollFd, PollFlags};

/// `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`.
pub(crate) fn socketpair_stream() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?)
}

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`: message boundaries
/// are kept, and fds ride with the message they belong to.
pub(crate) fn socketpair_seqpacket() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    Ok(rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?)
}

/// `ioctl(FIONBIO)`: switches `O_NONBLOCK` on or off.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, on)?)
}

/// `shutdown(SHUT_RD)`: the peer's further writes fail with `EPIPE` instead
/// of filling a buffer nobody reads.
pub(crate) fn shutdown_read(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(fd, rustix::net::Shutdown::Read)?)
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

/// Writes all of `bytes` to a socket (`send(MSG_NOSIGNAL)`) or, if `fd` is
/// not a socket, with `write(2)`. Retries on `EINTR` and partial writes, and
/// waits out `EAGAIN` on a non-blocking fd.
pub(crate) fn send_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::net::send(fd, bytes, SendFlags::NOSIGNAL) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
                poll(&mut fds, None)?;
            }
            Err(Errno::NOTSOCK) => return write_all(fd, bytes),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes all of `parts`, in order, to a stream socket (`sendmsg` with one
/// iovec per part, `MSG_NOSIGNAL`), as few calls as the kernel allows.
/// Retries on `EINTR` and partial writes; waits out `EAGAIN`.
pub(crate) fn send_vectored_all(fd: BorrowedFd<'_>, parts: &[&[u8]]) -> io::Result<()> {
    let mut skip = 0usize;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    while skip < total {
        let mut slices = Vec::with_capacity(parts.len());
        let mut left = skip;
        for p in parts {
            if left >= p.len() {
                left -= p.len();
                continue;
            }
            slices.push(IoSlice::new(&p[left..]));
            left = 0;
        }
        match rustix::net::sendmsg(fd, &slices, &mut SendAncillaryBuffer::default(), SendFlags::NOSIGNAL) {
            Ok(n) => skip += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
                poll(&mut fds, None)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `shutdown(SHUT_WR)`: the peer reads end of file; this end may still read.
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(fd, rustix::net::Shutdown::Write)?)
}

/// `shutdown(SHUT_RDWR)`: both directions end; blocked readers wake.
pub(crate) fn shutdown_both(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(fd, rustix::net::Shutdown::Both)?)
}

/// Points the fd number at `/dev/null` (`dup3`), dropping this process's
/// reference to what it was open on, while the number stays valid for
/// whoever still holds it: Python's `close()` of a connection whose fd
/// Rust code may still borrow.
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

/// Sends as much of `bytes` as the socket takes without blocking
/// (`send(MSG_NOSIGNAL | MSG_DONTWAIT)`), and returns how much that was.
pub(crate) fn send_nonblocking(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match rustix::net::send(fd, &bytes[sent..], SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Ok(n) => sent += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sent)
}

/// `write(2)` until all of `bytes` is written, retrying on `EINTR`.
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

/// The most fds one message carries (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// `sendmsg` of `bytes` with `fds` (at most [`MAX_FDS`]) attached as
/// `SCM_RIGHTS`, in one message.
pub(crate) fn send_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    if fds.len() > MAX_FDS {
        return Err(io::Error::other(format!("more than {MAX_FDS} fds in one message")));
    }
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("fd control buffer too small"));
    }
    loop {
        match rustix::net::sendmsg(sock, &[IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(_) => return Err(io::Error::other("a message with fds was sent only in part")),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// `recvmsg` of one message into `buf` (cleared first), collecting up to
/// [`MAX_FDS`] fds (received `CLOEXEC`) into `fds`. Returns the byte count;
/// `Ok(0)` with no fds is end of file.
pub(crate) fn recv_fds(sock: BorrowedFd<'_>, buf: &mut Vec<u8>, fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    buf.clear();
    let cap = buf.capacity().max(4096);
    buf.resize(cap, 0);
    let result = loop {
        match rustix::net::recvmsg(sock, &mut [IoSliceMut::new(buf)], &mut control, RecvFlags::CMSG_CLOEXEC) {
            Err(Errno::INTR) => continue,
            other => break other,
        }
    };
    let msg = match result {
        Ok(msg) => msg,
        Err(e) => {
            buf.clear();
            return Err(e.into());
        }
    };
    buf.truncate(msg.bytes);
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(rustix::net::ReturnFlags::TRUNC) {
        return Err(io::Error::other("a message was truncated"));
    }
    if msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        // The kernel could not install every fd (out of fds, or too many).
        return Err(io::Error::other("fds attached to a message were dropped (control message truncated)"));
    }
    Ok(msg.bytes)
}

/// `recvmsg` of up to `max` bytes appended to `buf`, collecting the fds
/// attached to them (received `CLOEXEC`) into `fds`. Retries on `EINTR`;
/// `Ok(0)` is end of file.
pub(crate) fn recv_append(
    sock: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let start = buf.len();
    buf.resize(start + max, 0);
    let result = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut buf[start..])],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(Errno::INTR) => continue,
            other => break other,
        }
    };
    let n = result.as_ref().map_or(0, |msg| msg.bytes);
    buf.truncate(start + n);
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    let msg = result?;
    if msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(io::Error::other("fds attached to a message were dropped (control message truncated)"));
    }
    Ok(n)
}

/// `poll(2)` with an optional timeout. An interrupted poll counts as a
/// timeout with nothing ready; callers loop on their own deadline.
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    let ts =
        timeout.map(|d| Timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as i64, tv_nsec: d.subsec_nanos() as _ });
    match rustix::event::poll(fds, ts.as_ref()) {
        Ok(n) => Ok(n),
        Err(Errno::INTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Closes every fd from 3 up except `keep` (`close_range`), in a freshly
/// forked child that serves on `keep` alone.
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
pub(crate) fn close_raw(fd: RawFd) {
    if fd < 0 {
        return;
    }
    // SAFETY: the caller forgot every Rust owner of `fd` (it is a copy
    // inherited over fork), so closing it cannot cause a double close.
    drop(unsafe { <OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(fd) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    #[test]
    fn fds_travel_with_their_message() {
        let (a, b) = socketpair_seqpacket().unwrap();
        let (r, w) = pipe().unwrap();
        send_fds(a.as_fd(), b"hello", &[w.as_fd()]).unwrap();
        drop(w);
        let mut buf = Vec::new();
        let mut fds = Vec::new();
        assert_eq!(recv_fds(b.as_fd(), &mut buf, &mut fds).unwrap(), 5);
        assert_eq!(buf, b"hello");
        assert_eq!(fds.len(), 1);
        write_all(fds[0].as_fd(), b"x").unwrap();
        let mut got = Vec::new();
        assert_eq!(read(r.as_fd(), &mut got, 16).unwrap(), 1);
        assert_eq!(got, b"x");
        drop(a);
        assert_eq!(recv_fds(b.as_fd(), &mut buf, &mut Vec::new()).unwrap(), 0);
    }

    #[test]
    fn read_appends_to_what_is_there() {
        let (a, b) = socketpair_stream().unwrap();
        send_all(a.as_fd(), b"world").unwrap();
        let mut buf = b"hello ".to_vec();
        let n = read(b.as_fd(), &mut buf, 64).unwrap();
        assert_eq!(n, 5);
        assert_eq!(buf, b"hello world");
    }

    #[test]
    fn zero_timeout_poll_does_not_block() {
        let (a, _b) = socketpair_stream().unwrap();
        let mut fds = [PollFd::new(&a, PollFlags::IN)];
        assert_eq!(poll(&mut fds, Some(Duration::ZERO)).unwrap(), 0);
    }
}

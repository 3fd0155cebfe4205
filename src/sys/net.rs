//! Sockets: socket pairs, whole-message sends and receives, fds passed
//! with `SCM_RIGHTS`, and listening and connecting on Unix paths, the Linux
//! abstract namespace, and TCP.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketAddrAny, SocketAddrUnix, SocketFlags, SocketType,
};

use super::{PollFd, PollFlags, poll, write_all};

/// `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`.
#[doc(alias("socketpair", "SOCK_STREAM"))]
pub(crate) fn socketpair_stream() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?)
}

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`: message boundaries
/// are kept, and fds ride with the message they belong to.
#[doc(alias("socketpair", "SOCK_SEQPACKET"))]
pub(crate) fn socketpair_seqpacket() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

/// `shutdown(SHUT_RD)`: the peer's further writes fail with `EPIPE` instead
/// of filling a buffer nobody reads.
#[doc(alias("shutdown", "SHUT_RD"))]
pub(crate) fn shutdown_read(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(fd, rustix::net::Shutdown::Read)?)
}

/// `shutdown(SHUT_WR)`: the peer reads end of file; this end may still read.
#[doc(alias("shutdown", "SHUT_WR"))]
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(fd, rustix::net::Shutdown::Write)?)
}

/// `shutdown(SHUT_RDWR)`: both directions end; blocked readers wake.
#[doc(alias("shutdown", "SHUT_RDWR"))]
pub(crate) fn shutdown_both(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(fd, rustix::net::Shutdown::Both)?)
}

/// Writes all of `bytes` to a socket (`send(MSG_NOSIGNAL)`) or, if `fd` is
/// not a socket, with `write(2)`. Retries on `EINTR` and partial writes, and
/// waits out `EAGAIN` on a non-blocking fd.
#[doc(alias("send", "MSG_NOSIGNAL"))]
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
#[doc(alias("sendmsg"))]
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

/// Sends as much of `parts`, in order, as the socket takes without
/// blocking (`sendmsg(MSG_NOSIGNAL | MSG_DONTWAIT)` with one iovec per
/// part), and returns how much that was: 0 when the socket is full.
#[doc(alias("sendmsg", "writev", "MSG_DONTWAIT"))]
pub(crate) fn send_vectored_nonblocking(fd: BorrowedFd<'_>, parts: &[&[u8]]) -> io::Result<usize> {
    let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    loop {
        let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
        match rustix::net::sendmsg(fd, &slices, &mut SendAncillaryBuffer::default(), flags) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The most fds one message carries (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// `sendmsg` of `bytes` with `fds` (at most [`MAX_FDS`]) attached as
/// `SCM_RIGHTS`, in one message.
#[doc(alias("sendmsg", "SCM_RIGHTS"))]
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
#[doc(alias("recvmsg", "SCM_RIGHTS"))]
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
#[doc(alias("recvmsg", "SCM_RIGHTS"))]
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

/// How many connections may wait for `accept`.
const BACKLOG: i32 = 128;

fn stream(family: AddressFamily) -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?)
}

/// A listening socket on a filesystem path, whose socket file has mode
/// 0600 before the socket starts listening (so no one else can connect in
/// between: connecting needs write permission on the file).
#[doc(alias("bind", "listen", "AF_UNIX"))]
pub(crate) fn listen_unix_path(path: &Path) -> io::Result<OwnedFd> {
    let fd = stream(AddressFamily::UNIX)?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    rustix::net::listen(&fd, BACKLOG)?;
    Ok(fd)
}

/// A listening socket in the abstract namespace (no file; Linux only).
#[doc(alias("bind", "listen"))]
pub(crate) fn listen_unix_abstract(name: &[u8]) -> io::Result<OwnedFd> {
    let fd = stream(AddressFamily::UNIX)?;
    rustix::net::bind(&fd, &SocketAddrUnix::new_abstract_name(name)?)?;
    rustix::net::listen(&fd, BACKLOG)?;
    Ok(fd)
}

/// A listening TCP socket (`SO_REUSEADDR`, as Python sets it).
#[doc(alias("bind", "listen", "SO_REUSEADDR"))]
pub(crate) fn listen_tcp(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let fd = stream(family)?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, BACKLOG)?;
    Ok(fd)
}

/// The address a TCP socket is bound to (its port, after binding port 0).
#[doc(alias("getsockname"))]
pub(crate) fn local_tcp_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let any: SocketAddrAny = rustix::net::getsockname(fd)?;
    SocketAddr::try_from(any).map_err(|_| io::Error::other("the socket is not a TCP socket"))
}

/// The address of a TCP socket's peer.
#[doc(alias("getpeername"))]
pub(crate) fn peer_tcp_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let any: SocketAddrAny = rustix::net::getpeername(fd)?.ok_or_else(|| io::Error::other("the socket has no peer"))?;
    SocketAddr::try_from(any).map_err(|_| io::Error::other("the socket is not a TCP socket"))
}

/// Accepts one connection (retrying on `EINTR`).
#[doc(alias("accept4"))]
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    loop {
        match rustix::net::accept_with(fd, SocketFlags::CLOEXEC) {
            Err(Errno::INTR) => {}
            other => return Ok(other?),
        }
    }
}

fn connect(fd: OwnedFd, addr: &impl rustix::net::addr::SocketAddrArg) -> io::Result<OwnedFd> {
    match rustix::net::connect(&fd, addr) {
        Ok(()) => Ok(fd),
        // An interrupted connect goes on in the background: wait for it.
        Err(Errno::INTR) => {
            let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::OUT)];
            super::poll(&mut fds, None)?;
            match rustix::net::sockopt::socket_error(&fd)? {
                Ok(()) => Ok(fd),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Connects to a Unix socket on a filesystem path.
#[doc(alias("connect"))]
pub(crate) fn connect_unix_path(path: &Path) -> io::Result<OwnedFd> {
    connect(stream(AddressFamily::UNIX)?, &SocketAddrUnix::new(path)?)
}

/// Connects to a Unix socket in the abstract namespace.
#[doc(alias("connect"))]
pub(crate) fn connect_unix_abstract(name: &[u8]) -> io::Result<OwnedFd> {
    connect(stream(AddressFamily::UNIX)?, &SocketAddrUnix::new_abstract_name(name)?)
}

/// Connects over TCP, with `TCP_NODELAY` (messages are written whole, and
/// request/response traffic must not wait for Nagle).
#[doc(alias("connect"))]
pub(crate) fn connect_tcp(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let fd = connect(stream(family)?, &addr)?;
    set_nodelay(fd.as_fd());
    Ok(fd)
}

/// `TCP_NODELAY` on an accepted TCP connection; nothing on other sockets.
#[doc(alias("setsockopt", "TCP_NODELAY"))]
pub(crate) fn set_nodelay(fd: BorrowedFd<'_>) {
    let _ = rustix::net::sockopt::set_tcp_nodelay(fd, true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{pipe, read};

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
}

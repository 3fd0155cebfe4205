//! Listening and connecting sockets: Unix paths, the Linux abstract
//! namespace, and TCP.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrAny, SocketAddrUnix, SocketFlags, SocketType};

/// How many connections may wait for `accept`.
const BACKLOG: i32 = 128;

fn stream(family: AddressFamily) -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?)
}

/// A listening socket on a filesystem path, whose socket file has mode
/// 0600 before the socket starts listening (so no one else can connect in
/// between: connecting needs write permission on the file).
pub(crate) fn listen_unix_path(path: &Path) -> io::Result<OwnedFd> {
    let fd = stream(AddressFamily::UNIX)?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    rustix::net::listen(&fd, BACKLOG)?;
    Ok(fd)
}

/// A listening socket in the abstract namespace (no file; Linux only).
pub(crate) fn listen_unix_abstract(name: &[u8]) -> io::Result<OwnedFd> {
    let fd = stream(AddressFamily::UNIX)?;
    rustix::net::bind(&fd, &SocketAddrUnix::new_abstract_name(name)?)?;
    rustix::net::listen(&fd, BACKLOG)?;
    Ok(fd)
}

/// A listening TCP socket (`SO_REUSEADDR`, as Python sets it).
pub(crate) fn listen_tcp(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let fd = stream(family)?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, BACKLOG)?;
    Ok(fd)
}

/// The address a TCP socket is bound to (its port, after binding port 0).
pub(crate) fn local_tcp_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let any: SocketAddrAny = rustix::net::getsockname(fd)?;
    SocketAddr::try_from(any).map_err(|_| io::Error::other("the socket is not a TCP socket"))
}

/// Accepts one connection (retrying on `EINTR`).
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
pub(crate) fn connect_unix_path(path: &Path) -> io::Result<OwnedFd> {
    connect(stream(AddressFamily::UNIX)?, &SocketAddrUnix::new(path)?)
}

/// Connects to a Unix socket in the abstract namespace.
pub(crate) fn connect_unix_abstract(name: &[u8]) -> io::Result<OwnedFd> {
    connect(stream(AddressFamily::UNIX)?, &SocketAddrUnix::new_abstract_name(name)?)
}

/// Connects over TCP, with `TCP_NODELAY` (messages are written whole, and
/// request/response traffic must not wait for Nagle).
pub(crate) fn connect_tcp(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let fd = connect(stream(family)?, &addr)?;
    set_nodelay(fd.as_fd());
    Ok(fd)
}

/// `TCP_NODELAY` on an accepted TCP connection; nothing on other sockets.
pub(crate) fn set_nodelay(fd: BorrowedFd<'_>) {
    let _ = rustix::net::sockopt::set_tcp_nodelay(fd, true);
}

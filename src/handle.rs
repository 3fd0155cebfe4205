//! [`Handle`]: a socket, a file or any other owner of a file descriptor,
//! as a process's argument.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{FdHandle, FdIn, FdOut};
use crate::sys::{AsFd, OwnedFd};

/// A socket, a file or any other owner of a file descriptor, passed to a
/// child process the way Python passes sockets and files in `args=`: wrap
/// it, pass it to [`Process::new`](crate::Process::new) or a pool's
/// [`initializer`](crate::PoolBuilder::initializer) (inside any argument
/// type: a tuple, a struct, a `Vec`), and the child gets its own
/// descriptor for the same socket or open file, under every start method
/// (the descriptor travels beside the argument's bytes, or is inherited
/// under fork, as a `Queue`'s does).
///
/// Any `T` that owns one descriptor works: [`TcpListener`], [`TcpStream`],
/// [`UdpSocket`], [`UnixListener`], [`UnixStream`], [`File`], [`OwnedFd`]
/// (anything that is [`AsFd`] and `From<OwnedFd>`). A bare descriptor
/// number cannot be passed by mistake: it is only meaningful under fork,
/// and a `Handle` means the same thing under every start method.
///
/// Like [`Queue`](crate::Queue), a `Handle` travels only in a process's (or
/// pool initializer's) argument, where its descriptor can go along; in a
/// pool task or a message it is a clear error.
///
/// [`TcpListener`]: std::net::TcpListener
/// [`TcpStream`]: std::net::TcpStream
/// [`UdpSocket`]: std::net::UdpSocket
/// [`UnixListener`]: std::os::unix::net::UnixListener
/// [`UnixStream`]: std::os::unix::net::UnixStream
/// [`File`]: std::fs::File
///
/// # Examples
///
/// Four processes serve one listening socket (the pattern of Python's
/// `mp_webserver.py`):
///
/// ```
/// use multiproc::{Handle, Process};
/// use std::io::{Read, Write};
/// use std::net::{TcpListener, TcpStream};
///
/// fn serve(listener: Handle<TcpListener>) {
///     let (mut conn, _) = listener.accept().expect("a connection");
///     writeln!(conn, "served by {}", std::process::id()).expect("an answer");
/// }
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let address = listener.local_addr()?;
/// let shared = Handle::new(listener);
/// let children: Vec<_> = (0..4)
///     .map(|_| Process::new(serve, shared.try_clone()?).start())
///     .collect::<multiproc::Result<_>>()?;
/// for _ in 0..4 {
///     let mut answer = String::new();
///     TcpStream::connect(address)?.read_to_string(&mut answer)?;
///     assert!(answer.starts_with("served by "));
/// }
/// for child in children {
///     child.join()?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias("send_handle", "recv_handle", "DupFd", "reduction", "duplicate"))]
pub struct Handle<T> {
    inner: T,
}

impl<T> Handle<T> {
    /// Wraps `inner` to pass it to a child.
    ///
    /// # Examples
    ///
    /// ```
    /// let file = multiproc::Handle::new(std::fs::File::open("/dev/null")?);
    /// assert!(file.metadata()?.is_file() == false);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(inner: T) -> Handle<T> {
        Handle { inner }
    }

    /// The socket or file, unwrapped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::TcpListener;
    /// let handle = multiproc::Handle::new(TcpListener::bind("127.0.0.1:0")?);
    /// let listener: TcpListener = handle.into_inner();
    /// assert!(listener.local_addr()?.port() > 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsFd + From<OwnedFd>> Handle<T> {
    /// Another handle to the same socket or file (a duplicated descriptor),
    /// to pass to one more child.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the process has no
    /// descriptor left.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiproc::Handle::new(std::net::UdpSocket::bind("127.0.0.1:0")?);
    /// let b = a.try_clone()?;
    /// assert_eq!(a.local_addr()?, b.local_addr()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_clone(&self) -> crate::Result<Handle<T>> {
        let fd = self.inner.as_fd().try_clone_to_owned().map_err(|e| crate::Error::io("duplicating a Handle", e))?;
        Ok(Handle { inner: T::from(fd) })
    }
}

impl<T> From<T> for Handle<T> {
    fn from(inner: T) -> Handle<T> {
        Handle { inner }
    }
}

impl<T> Deref for Handle<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for Handle<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: fmt::Debug> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Handle").field(&self.inner).finish()
    }
}

impl<T> FdHandle for Handle<T> {
    const WHAT: &'static str = "a Handle (a socket or file)";
}

impl<T: AsFd> Serialize for Handle<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        FdOut::<Self>::new(self.inner.as_fd()).serialize(serializer)
    }
}

impl<'de, T: From<OwnedFd>> Deserialize<'de> for Handle<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Handle { inner: T::from(FdIn::<Self>::deserialize(deserializer)?.into_fd()) })
    }
}

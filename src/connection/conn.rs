//! [`Connection`]: one end of a [`Pipe`](super::Pipe) or of a
//! [`Listener`](super::Listener)/[`Client`](super::Client) link.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::framing;
use crate::codec::{self, FdHandle, FdIn, FdOut};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, AsFd, BorrowedFd, OwnedFd, PollFd, PollFlags};

/// How much one read asks for: small messages arrive many to a read.
const READ_CHUNK: usize = 64 * 1024;

/// What a message's header alone may make a receiver reserve; beyond it,
/// the buffer doubles as bytes arrive.
const TRUSTED_RESERVE: usize = 16 << 20;

/// One end of a two-way (or one-way) message link between processes, as
/// Python's `multiprocessing.connection.Connection`.
///
/// Messages are whole: [`send_bytes`](Connection::send_bytes) on one end is
/// one [`recv_bytes`](Connection::recv_bytes) on the other, framed as
/// Python frames them, so a Python peer reached through
/// [`Listener`](super::Listener) or [`Client`](super::Client) reads and
/// writes the same bytes. [`send`](Connection::send) and
/// [`recv`](Connection::recv) carry any serde type (postcard; plain
/// numbers as raw bytes) between Rust peers.
///
/// The connection is untyped, like Python's: each `recv::<T>()` names the
/// type it expects, and a mismatch is an [`ErrorKind::Deserialize`] error.
/// One type per direction is the usual discipline; a typed wrapper is one
/// line on top. It is `Send + Sync`: sends and receives each take a lock,
/// so threads can share one end.
///
/// A connection travels to a child as (part of) the argument of
/// [`Process::new`](crate::Process::new) under every start method.
///
/// # Examples
///
/// ```
/// use multiproc::{Pipe, Process, connection::Connection};
///
/// fn echo(conn: Connection) -> multiproc::Result<()> {
///     let msg: String = conn.recv()?;
///     conn.send(&msg.to_uppercase())
/// }
///
/// let (here, there) = Pipe(true)?;
/// let child = Process::new(echo, there).start()?;
/// here.send(&"hello".to_string())?;
/// assert_eq!(here.recv::<String>()?, "HELLO");
/// child.join()??;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("fileno"))]
pub struct Connection {
    fd: OwnedFd,
    readable: bool,
    writable: bool,
    closed: AtomicBool,
    reader: Mutex<Reader>,
    writer: Mutex<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Reader {
    buf: Vec<u8>,
    pos: usize,
    /// Set when the stream can no longer be trusted (a refused header).
    broken: Option<String>,
    /// The last message was larger than a read: the next header is read
    /// alone, so that a large body goes straight into its own buffer
    /// instead of through this one (a copy of up to `READ_CHUNK` bytes).
    header_alone: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd)
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connection {
    pub(crate) fn new(fd: OwnedFd, readable: bool, writable: bool) -> Connection {
        Connection {
            fd,
            readable,
            writable,
            closed: AtomicBool::new(false),
            reader: Mutex::new(Reader::default()),
            writer: Mutex::new(Vec::new()),
        }
    }

    /// Another handle on the same end (its own fd): to keep one while
    /// passing the other to a child, as `UnixStream::try_clone` does.
    /// Messages are not split between handles only if a single handle
    /// receives at a time.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] on a closed end; [`ErrorKind::Io`] if
    /// out of file descriptors.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe(true)?;
    /// let a2 = a.try_clone()?;
    /// a2.send_bytes(b"via the clone")?;
    /// drop(a2);
    /// a.send_bytes(b"and the first")?;
    /// assert_eq!(b.recv_bytes()?, b"via the clone");
    /// assert_eq!(b.recv_bytes()?, b"and the first");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_clone(&self) -> Result<Connection> {
        if self.closed() {
            return Err(Error::new(ErrorKind::InvalidState, "the connection is closed; open a new one"));
        }
        let fd = self.fd.try_clone().map_err(|e| Error::io("duplicating a connection's fd", e))?;
        Ok(Connection::new(fd, self.readable, self.writable))
    }

    /// Whether this end can receive (false for the sending end of a
    /// one-way pipe).
    ///
    /// # Examples
    ///
    /// ```
    /// let (r, w) = multiproc::Pipe(false)?;
    /// assert!(r.readable() && !r.writable());
    /// assert!(w.writable() && !w.readable());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send (false for the receiving end of a
    /// one-way pipe).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe(true)?;
    /// assert!(a.writable() && b.writable());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether [`close`](Connection::close) was called on this end.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = multiproc::Pipe(true)?;
    /// a.close();
    /// assert!(a.closed());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn check(&self, write: bool) -> Result<()> {
        if self.closed() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "the connection is closed (close() was called on this end); open a new one",
            ));
        }
        match (write, self.writable, self.readable) {
            (true, false, _) => Err(Error::new(
                ErrorKind::InvalidState,
                "this end of a one-way pipe only receives; send on the other end (Pipe(false) returns (reader, writer))",
            )),
            (false, _, false) => Err(Error::new(
                ErrorKind::InvalidState,
                "this end of a one-way pipe only sends; receive on the other end (Pipe(false) returns (reader, writer))",
            )),
            _ => Ok(()),
        }
    }

    /// Sends `bytes` as one message (Python's `send_bytes`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] on a closed or receive-only end;
    /// [`ErrorKind::Io`] if the peer is gone (`EPIPE`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe(true)?;
    /// a.send_bytes(b"hi")?;
    /// assert_eq!(b.recv_bytes()?, b"hi");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.check(true)?;
        let (header, n) = framing::header(bytes.len() as u64, false);
        let _w = lock(&self.writer);
        self.check(true)?;
        sys::send_vectored_all(self.fd.as_fd(), &[&header[..n], bytes]).map_err(|e| send_error(&e))
    }

    /// Sends one message made of what `head` writes and then `tail`,
    /// without copying `tail` into the send buffer (a manager's request,
    /// whose arguments end it).
    pub(crate) fn send_parts(&self, head: impl FnOnce(&mut Vec<u8>) -> Result<()>, tail: &[u8]) -> Result<()> {
        self.check(true)?;
        let mut w = lock(&self.writer);
        self.check(true)?;
        w.clear();
        head(&mut w)?;
        let len = (w.len() + tail.len()) as u64;
        codec::check_outgoing_len(len, "a message")?;
        let (header, n) = framing::header(len, false);
        sys::send_vectored_all(self.fd.as_fd(), &[&header[..n], &w, tail]).map_err(|e| send_error(&e))
    }

    /// Serializes `value` and sends it as one message (Python's `send`).
    /// The bytes are postcard's, so the receiver may name any type with the
    /// same serde form: a `str` is read as a `String`, a `[u8]` as a
    /// `Vec<u8>`, a `u32` as a `u64`. Values that borrow are fine: a
    /// `(u32, &str)` is read as a `(u32, String)`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Serialize`] for a value that does not serialize (nothing
    /// is sent), and those of [`send_bytes`](Connection::send_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe(true)?;
    /// a.send(&(1u8, "two".to_string()))?;
    /// assert_eq!(b.recv::<(u8, String)>()?, (1, "two".to_string()));
    /// let name = multiproc::current_process().name().to_string();
    /// a.send(&(2u32, name.as_str()))?;
    /// assert_eq!(b.recv::<(u32, String)>()?, (2, name));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.check(true)?;
        let mut w = lock(&self.writer);
        self.check(true)?;
        w.clear();
        let mut enc = codec::Encoder::new(&mut *w);
        enc.push_message(value, "a message")?;
        codec::check_outgoing_len(w.len() as u64, "a message")?;
        let (header, n) = framing::header(w.len() as u64, false);
        sys::send_vectored_all(self.fd.as_fd(), &[&header[..n], &w]).map_err(|e| send_error(&e))
    }

    /// Receives one message (Python's `recv_bytes`), waiting for it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] once the peer has closed and nothing is left;
    /// [`ErrorKind::FrameTooLarge`] for a message above
    /// [`max_frame_size`](crate::max_frame_size) (refused before anything
    /// is allocated; the connection is unusable afterwards);
    /// [`ErrorKind::InvalidState`] on a closed or send-only end.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ErrorKind;
    /// let (a, b) = multiproc::Pipe(true)?;
    /// a.send_bytes(b"last")?;
    /// drop(a);
    /// assert_eq!(b.recv_bytes()?, b"last");
    /// assert_eq!(b.recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_limited(codec::max_frame_size())
    }

    /// Receives one message of at most `max` bytes (Python's
    /// `recv_bytes(maxlength)`); a longer one is refused before it is read.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::FrameTooLarge`] for a longer message (the connection is
    /// unusable afterwards), and those of
    /// [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ErrorKind;
    /// let (a, b) = multiproc::Pipe(true)?;
    /// a.send_bytes(&[0; 300])?;
    /// assert_eq!(b.recv_bytes_max(256).unwrap_err().kind(), ErrorKind::FrameTooLarge);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn recv_bytes_max(&self, max: usize) -> Result<Vec<u8>> {
        self.recv_limited((max as u64).min(codec::max_frame_size()))
    }

    /// Receives one message into `buf` (Python's `recv_bytes_into`) and
    /// returns its length.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BufferTooShort`] when the message is longer than `buf`:
    /// the message is consumed, and [`Error::data`] holds all of it. Those
    /// of [`recv_bytes`](Connection::recv_bytes) otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe(true)?;
    /// a.send_bytes(b"abc")?;
    /// let mut buf = [0u8; 8];
    /// let n = b.recv_bytes_into(&mut buf)?;
    /// assert_eq!(&buf[..n], b"abc");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        let msg = self.recv_bytes()?;
        if msg.len() > buf.len() {
            return Err(Error::new(
                ErrorKind::BufferTooShort,
                format!(
                    "a message of {} bytes does not fit a buffer of {}; the whole message is in Error::data()",
                    msg.len(),
                    buf.len()
                ),
            )
            .with_data(msg));
        }
        buf[..msg.len()].copy_from_slice(&msg);
        Ok(msg.len())
    }

    /// Receives one message and deserializes it as `T` (Python's `recv`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Deserialize`] if the message is not a `T` (it is
    /// consumed), and those of [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe(true)?;
    /// a.send(&vec![1.5f64, 2.5])?;
    /// assert_eq!(b.recv::<Vec<f64>>()?, [1.5, 2.5]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn recv<T: DeserializeOwned + 'static>(&self) -> Result<T> {
        decode_message(&self.recv_bytes()?)
    }

    fn recv_limited(&self, limit: u64) -> Result<Vec<u8>> {
        self.recv_until(limit, None)
    }

    /// Receives one message of at most `limit` bytes, failing with
    /// [`ErrorKind::Timeout`] if any read would wait past `deadline` (the
    /// connection is unusable after a timeout in the middle of a message).
    pub(crate) fn recv_until(&self, limit: u64, deadline: Option<Instant>) -> Result<Vec<u8>> {
        self.check(false)?;
        let mut r = lock(&self.reader);
        self.check(false)?;
        if let Some(why) = &r.broken {
            return Err(Error::new(ErrorKind::Protocol, why.clone()));
        }
        let (head, len) = loop {
            if let Some(found) = framing::parse_header(&r.buf[r.pos..]).inspect_err(|e| {
                r.broken = Some(format!("the connection is unusable after an earlier error: {e}"));
            })? {
                break found;
            }
            self.ready_by(deadline)?;
            let max = if r.header_alone { framing::header_bytes_missing(r.buf.len() - r.pos) } else { READ_CHUNK };
            self.fill_at_most(&mut r, max)?;
        };
        if len > limit {
            return Err(too_large(&mut r, len, limit));
        }
        let len = len as usize;
        r.header_alone = len > READ_CHUNK;
        if len <= READ_CHUNK {
            // A small message waits whole in the buffer, so that a timeout
            // consumes nothing.
            while r.buf.len() - r.pos < head + len {
                self.ready_by(deadline)?;
                self.fill(&mut r)?;
            }
        }
        r.pos += head;
        let have = r.buf.len() - r.pos;
        if have >= len {
            let msg = r.buf[r.pos..r.pos + len].to_vec();
            r.pos += len;
            r.compact();
            return Ok(msg);
        }
        // A large message: read the rest straight into its own buffer,
        // which grows as bytes arrive (a header alone never makes us
        // reserve more than TRUSTED_RESERVE).
        let mut msg = Vec::with_capacity(len.min(have.max(TRUSTED_RESERVE)));
        msg.extend_from_slice(&r.buf[r.pos..]);
        r.pos = r.buf.len();
        r.compact();
        while msg.len() < len {
            if let Err(e) = self.ready_by(deadline) {
                r.broken = Some(format!("the connection is unusable after a timeout in the middle of a message: {e}"));
                return Err(e);
            }
            let spare = msg.capacity() - msg.len();
            let want = if spare > 0 { spare.min(len - msg.len()) } else { msg.len().min(len - msg.len()) };
            match sys::read(self.fd.as_fd(), &mut msg, want) {
                Ok(0) => return Err(self.ended(true)),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err(self.ended(true)),
                Err(e) => return Err(Error::io("receiving a message", e)),
            }
        }
        Ok(msg)
    }

    /// The next message if it has arrived whole, without waiting (`None`
    /// while it has not). No byte past that message's end is read, so a
    /// caller with a small `limit` (a handshake) holds at most a header
    /// and `limit` bytes per connection, whatever the peer sends.
    pub(crate) fn try_recv_small(&self, limit: usize) -> Result<Option<Vec<u8>>> {
        self.check(false)?;
        let mut r = lock(&self.reader);
        if let Some(why) = &r.broken {
            return Err(Error::new(ErrorKind::Protocol, why.clone()));
        }
        loop {
            let have = r.buf.len() - r.pos;
            let found = framing::parse_header(&r.buf[r.pos..]).inspect_err(|e| {
                r.broken = Some(format!("the connection is unusable after an earlier error: {e}"));
            })?;
            let need = match found {
                Some((_, len)) if len > limit as u64 => return Err(too_large(&mut r, len, limit as u64)),
                Some((head, len)) if have >= head + len as usize => {
                    let msg = r.buf[r.pos + head..r.pos + head + len as usize].to_vec();
                    r.pos += head + len as usize;
                    r.compact();
                    return Ok(Some(msg));
                }
                Some((head, len)) => head + len as usize - have,
                None => framing::header_bytes_missing(have),
            };
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            if sys::poll(&mut fds, Some(Duration::ZERO)).map_err(|e| Error::io("polling a connection", e))? == 0 {
                return Ok(None);
            }
            self.fill_at_most(&mut r, need)?;
        }
    }

    /// Waits until the socket is readable, or fails with
    /// [`ErrorKind::Timeout`] once `deadline` passes.
    fn ready_by(&self, deadline: Option<Instant>) -> Result<()> {
        let Some(deadline) = deadline else {
            return Ok(());
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            if sys::poll(&mut fds, Some(left)).map_err(|e| Error::io("polling a connection", e))? > 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "the peer stopped sending in the middle of a message and the time ran out",
                ));
            }
        }
    }

    /// Reads more bytes into the buffer (blocking).
    fn fill(&self, r: &mut Reader) -> Result<()> {
        self.fill_at_most(r, READ_CHUNK)
    }

    /// Reads up to `max` more bytes into the buffer (blocking).
    fn fill_at_most(&self, r: &mut Reader, max: usize) -> Result<()> {
        r.compact();
        let partial = r.buf.len() > r.pos;
        match sys::read(self.fd.as_fd(), &mut r.buf, max) {
            Ok(0) => Err(self.ended(partial)),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Err(self.ended(partial)),
            Err(e) => Err(Error::io("receiving a message", e)),
        }
    }

    fn ended(&self, partial: bool) -> Error {
        if self.closed() {
            Error::new(ErrorKind::InvalidState, "the connection was closed (close() on this end) during a receive")
        } else if partial {
            Error::new(
                ErrorKind::Eof,
                "the peer closed the connection in the middle of a message (it died or closed while sending)",
            )
        } else {
            Error::new(ErrorKind::Eof, "the peer closed the connection, and every message it sent has been received")
        }
    }

    /// Whether a message (or end of file) is there to receive, waiting up
    /// to `timeout` for one (`None`: for ever; zero: just a look). Python's
    /// `poll`. Nothing is consumed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] on a closed or send-only end.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiproc::Pipe(true)?;
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// a.send_bytes(b"")?;
    /// assert!(b.poll(Some(Duration::from_secs(1)))?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.check(false)?;
        if self.has_buffered() {
            return Ok(true);
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            let n = sys::poll(&mut fds, left).map_err(|e| Error::io("polling a connection", e))?;
            if n > 0 {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// Whether bytes are already buffered on this side (false while
    /// another thread receives: its bytes are not ours to count, and
    /// `poll`/`wait` must not wait for it).
    pub(crate) fn has_buffered(&self) -> bool {
        match self.reader.try_lock() {
            Ok(r) => r.buf.len() > r.pos,
            Err(std::sync::TryLockError::Poisoned(p)) => {
                let r = p.into_inner();
                r.buf.len() > r.pos
            }
            Err(std::sync::TryLockError::WouldBlock) => false,
        }
    }

    /// Closes this end (Python's `close()`): this process lets go of the
    /// socket, so the peer reads end of file once every other process
    /// holding this end has let go too, and every later call here fails
    /// with [`ErrorKind::InvalidState`]. Other processes' copies of this
    /// end keep working. If another thread of this process is blocked in a
    /// receive or a send on this end, it is woken by shutting the socket
    /// down, which ends it for every holder. Dropping closes too.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ErrorKind;
    /// let (a, b) = multiproc::Pipe(true)?;
    /// a.close();
    /// assert_eq!(a.send_bytes(b"x").unwrap_err().kind(), ErrorKind::InvalidState);
    /// assert_eq!(b.recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let idle = (self.reader.try_lock(), self.writer.try_lock());
        if let (Ok(_r), Ok(_w)) = idle {
            // Nobody here is using the fd: let go of the socket, keeping
            // the number valid until drop.
            let _ = sys::retire(self.fd.as_fd());
        } else {
            let _ = sys::shutdown_both(self.fd.as_fd());
        }
    }
}

fn send_error(e: &std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => Error::new(
            ErrorKind::Eof,
            "the peer closed the connection; nothing more can be sent on it (check that the receiving process is alive)",
        ),
        _ => Error::io("sending a message", std::io::Error::new(e.kind(), e.to_string())),
    }
}

impl Reader {
    /// Drops consumed bytes once they are most of the buffer.
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > READ_CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// The error for a message above `limit`, which leaves the connection
/// unusable (its next bytes are that message's body, unread).
fn too_large(r: &mut Reader, len: u64, limit: u64) -> Error {
    let e = Error::new(
        ErrorKind::FrameTooLarge,
        format!(
            "a message of {len} bytes is above the limit of {limit} bytes; nothing was allocated, and the connection \
             is unusable now. Raise the limit (multiproc::set_max_frame_size) or send less"
        ),
    );
    r.broken = Some(format!("the connection is unusable after an earlier error: {e}"));
    e
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A connection in a process's argument travels with its fd; bytes this
/// side had buffered but not received stay behind, as in Python.
impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (FdOut::<Self>::new(self.fd.as_fd()), self.readable, self.writable).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (fd, readable, writable): (FdIn<Self>, bool, bool) = Deserialize::deserialize(deserializer)?;
        Ok(Connection::new(fd.into_fd(), readable, writable))
    }
}

impl FdHandle for Connection {
    const WHAT: &'static str = "a Connection";
}

/// The message in `bytes`, as [`Connection::send`] wrote it: all of it.
pub(super) fn decode_message<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T> {
    let mut dec = codec::Decoder::new(bytes);
    let value = dec.next_message::<T>("a message")?;
    if dec.remaining() > 0 {
        return Err(Error::new(
            ErrorKind::Deserialize,
            format!(
                "a message had {} bytes left after a `{}`; sender and receiver must agree on the type",
                dec.remaining(),
                std::any::type_name::<T>()
            ),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(c: &Connection, bytes: &[u8]) {
        sys::send_vectored_all(c.as_fd(), &[bytes]).unwrap();
    }

    #[test]
    fn a_deadline_bounds_every_read_of_a_half_sent_message() {
        let (a, b) = super::super::Pipe(true).unwrap();
        let soon = || Some(Instant::now() + Duration::from_millis(30));
        // Nothing at all, then half a header: the message waits whole.
        assert_eq!(b.recv_until(256, soon()).unwrap_err().kind(), ErrorKind::Timeout);
        raw(&a, &[0, 0]);
        assert_eq!(b.recv_until(256, soon()).unwrap_err().kind(), ErrorKind::Timeout);
        raw(&a, &[0, 2, b'o']);
        assert_eq!(b.recv_until(256, soon()).unwrap_err().kind(), ErrorKind::Timeout);
        raw(&a, b"k");
        assert_eq!(b.recv_until(256, soon()).unwrap(), b"ok", "a timeout before the body consumed nothing");

        // A large message cut short: the time runs out, and the stream is
        // unusable after that (its bytes were consumed).
        raw(&a, &(100i32 << 20).to_be_bytes());
        raw(&a, &[7; 50_000]);
        assert_eq!(b.recv_until(200 << 20, soon()).unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(b.recv_bytes().unwrap_err().kind(), ErrorKind::Protocol);
    }

    #[test]
    fn a_large_message_grows_its_buffer_as_bytes_arrive() {
        let (a, b) = super::super::Pipe(true).unwrap();
        let big: Vec<u8> = (0..40u32 << 20).map(|i| (i % 253) as u8).collect();
        let sent = big.clone();
        let t = std::thread::spawn(move || a.send_bytes(&sent));
        assert_eq!(b.recv_bytes().unwrap(), big);
        t.join().unwrap().unwrap();
    }

    #[test]
    fn every_size_arrives_whole_whatever_came_before() {
        // After a message larger than a read, the next header is read
        // alone: small messages behind it, a long-form header, and a
        // header that comes in pieces must all still arrive whole.
        let (a, b) = super::super::Pipe(true).unwrap();
        // Every receive has a generous deadline, so a hang fails the test.
        let recv = || b.recv_until(1 << 30, Some(Instant::now() + Duration::from_secs(20)));
        let big = |n: usize, seed: u8| -> Vec<u8> { (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect() };
        let (first, second) = (big(READ_CHUNK + 1, 1), big(3 * READ_CHUNK, 2));
        // More than a socket buffer holds: sent from a thread.
        let sender = std::thread::scope(|s| {
            let t = s.spawn(|| -> Result<()> {
                a.send_bytes(&first)?;
                a.send_bytes(b"one")?;
                a.send_bytes(b"")?;
                a.send_bytes(&second)
            });
            // A wrong or missing message closes the receiving end before
            // the assertion, so that the sender fails instead of blocking
            // the scope's join for ever.
            let mut got = Vec::new();
            for want in [&first[..], b"one", b"", &second] {
                let r = recv();
                let good = matches!(&r, Ok(m) if m == want);
                got.push((r, want));
                if !good {
                    b.close();
                    break;
                }
            }
            (got, t.join().unwrap())
        });
        for (r, want) in sender.0 {
            assert_eq!(r.unwrap(), want);
        }
        sender.1.unwrap();
        // A long-form header (Python's for 2 GiB and more; any length is
        // legal in it), in pieces, after a large message.
        let (long, n) = framing::header(5, true);
        raw(&a, &long[..3]);
        let soon = || Some(Instant::now() + Duration::from_millis(30));
        assert_eq!(b.recv_until(256, soon()).unwrap_err().kind(), ErrorKind::Timeout);
        raw(&a, &long[3..9]);
        assert_eq!(b.recv_until(256, soon()).unwrap_err().kind(), ErrorKind::Timeout);
        raw(&a, &long[9..n]);
        raw(&a, b"fives");
        a.send_bytes(&first).unwrap();
        assert_eq!(b.recv_until(256, soon()).unwrap(), b"fives");
        assert_eq!(recv().unwrap(), first);
        a.send_bytes(b"last").unwrap();
        assert_eq!(recv().unwrap(), b"last");
    }
}

//! The crate's one error type.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A `Result` whose error is [`multiproc::Error`](Error).
///
/// # Examples
///
/// ```
/// fn start() -> multiproc::Result<u32> {
///     Ok(multiproc::Process::new(|x: u32| x + 1, 1).start()?.join()?)
/// }
/// assert_eq!(start()?, 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is, for matching.
///
/// The list grows as the crate does, so a `match` needs a wildcard arm.
///
/// # Examples
///
/// ```
/// use multiproc::{ErrorKind, Process};
/// use std::time::Duration;
///
/// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
///
/// let child = Process::new(nap, 10_000).start()?;
/// let err = child.join_timeout(Duration::ZERO).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Timeout);
/// child.kill()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The target panicked; [`Error::panic_info`] has the message and location.
    Panicked,
    /// The child exited without returning a value, for example through
    /// `std::process::exit(n)`; [`Error::exitcode`] has `n`.
    Exited,
    /// The child was killed by a signal; [`Error::exitcode`] is minus the signal.
    Signaled,
    /// A timeout elapsed before the operation could finish.
    #[doc(alias("TimeoutError"))]
    Timeout,
    /// A value could not be serialized.
    #[doc(alias("PicklingError"))]
    Serialize,
    /// Bytes could not be deserialized into the expected type.
    #[doc(alias("UnpicklingError"))]
    Deserialize,
    /// A frame declared a length above the frame-size limit.
    FrameTooLarge,
    /// The peer broke the protocol: a corrupt frame, an unknown task id.
    Protocol,
    /// The peer runs a different build of the executable.
    BuildMismatch,
    /// The call does not fit the object's state, such as joining twice.
    InvalidState,
    /// An argument is out of range or malformed.
    InvalidInput,
    /// multiproc cannot work in this environment.
    Unsupported,
    /// An operating-system call failed; [`std::error::Error::source`] has the `io::Error`.
    Io,
    /// A pool worker died (killed, crashed, exited) while it held the task;
    /// [`Error::pid`] and [`Error::exitcode`] say which and how.
    #[doc(alias("BrokenProcessPool"))]
    WorkerLost,
    /// The task was cancelled before it started.
    #[doc(alias("CancelledError"))]
    Cancelled,
    /// The pool cannot run tasks any more: its initializer failed, or it
    /// was terminated.
    #[doc(alias("BrokenProcessPool"))]
    BrokenPool,
    /// The other end closed the connection (Python's `EOFError`).
    #[doc(alias("EOFError"))]
    Eof,
    /// The peer did not prove that it knows the authkey, or refused ours
    /// (Python's `AuthenticationError`).
    #[doc(alias("AuthenticationError"))]
    Authentication,
    /// The queue had nothing to take (Python's `queue.Empty`).
    #[doc(alias("queue.Empty"))]
    Empty,
    /// The queue had no room (Python's `queue.Full`).
    #[doc(alias("queue.Full"))]
    Full,
    /// A message did not fit the buffer given to `recv_bytes_into`; the
    /// whole message is in [`Error::data`] (Python's `BufferTooShort`).
    BufferTooShort,
    /// A barrier was aborted, reset, or timed out while this caller waited
    /// (Python's `BrokenBarrierError`).
    #[doc(alias("BrokenBarrierError"))]
    BrokenBarrier,
    /// The [`Manager`](crate::Manager)'s server process is gone (it was
    /// shut down, killed, or crashed): no proxy call can be answered.
    ManagerGone,
    /// A pool task went over the pool's
    /// [`memory_limit`](crate::PoolBuilder::memory_limit): its allocation
    /// was refused and its worker replaced; [`Error::memory`] has the limit
    /// and the worker's peak.
    #[doc(alias("MemoryError"))]
    MemoryExceeded,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::Panicked => "the target panicked",
            ErrorKind::Exited => "the process exited without a result",
            ErrorKind::Signaled => "the process was killed by a signal",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Serialize => "serialization failed",
            ErrorKind::Deserialize => "deserialization failed",
            ErrorKind::FrameTooLarge => "frame too large",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::BuildMismatch => "build mismatch",
            ErrorKind::InvalidState => "invalid state",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Io => "I/O error",
            ErrorKind::WorkerLost => "worker lost",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::BrokenPool => "broken pool",
            ErrorKind::Eof => "end of file",
            ErrorKind::Authentication => "authentication failed",
            ErrorKind::Empty => "empty",
            ErrorKind::Full => "full",
            ErrorKind::BufferTooShort => "buffer too short",
            ErrorKind::BrokenBarrier => "broken barrier",
            ErrorKind::ManagerGone => "manager gone",
            ErrorKind::MemoryExceeded => "memory limit exceeded",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A panic that happened in another process, carried back as data.
///
/// # Examples
///
/// ```
/// use multiproc::Process;
///
/// fn boom(_: ()) { panic!("boom") }
///
/// let err = Process::new(boom, ()).start()?.join().unwrap_err();
/// let panic = err.panic_info().expect("the child panicked");
/// assert_eq!(panic.message(), "boom");
/// assert!(panic.file().unwrap().ends_with(".rs"));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanicInfo {
    message: String,
    location: Option<(String, u32, u32)>,
}

impl PanicInfo {
    pub(crate) fn new(message: String, location: Option<(String, u32, u32)>) -> Self {
        PanicInfo { message, location }
    }

    /// The panic message, as `panic!` formatted it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Process;
    /// fn boom(n: u32) { panic!("bad {n}") }
    /// let err = Process::new(boom, 7).start()?.join().unwrap_err();
    /// assert_eq!(err.panic_info().unwrap().message(), "bad 7");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The source file of the `panic!`, if the child's panic hook saw it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Process;
    /// fn boom(_: ()) { panic!("boom") }
    /// let err = Process::new(boom, ()).start()?.join().unwrap_err();
    /// assert!(err.panic_info().unwrap().file().is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn file(&self) -> Option<&str> {
        self.location.as_ref().map(|(f, _, _)| f.as_str())
    }

    /// The line of the `panic!`, if known.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Process;
    /// fn boom(_: ()) { panic!("boom") }
    /// let err = Process::new(boom, ()).start()?.join().unwrap_err();
    /// assert!(err.panic_info().unwrap().line().unwrap() > 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn line(&self) -> Option<u32> {
        self.location.as_ref().map(|&(_, l, _)| l)
    }

    /// The column of the `panic!`, if known.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Process;
    /// fn boom(_: ()) { panic!("boom") }
    /// let err = Process::new(boom, ()).start()?.join().unwrap_err();
    /// assert!(err.panic_info().unwrap().column().unwrap() > 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn column(&self) -> Option<u32> {
        self.location.as_ref().map(|&(_, _, c)| c)
    }
}

impl fmt::Display for PanicInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some((file, line, col)) => {
                write!(f, "panicked at {file}:{line}:{col}: {}", self.message)
            }
            None => write!(f, "panicked: {}", self.message),
        }
    }
}

/// The error of every fallible multiproc call.
///
/// Its message says what happened and what to do about it. Match on
/// [`kind`](Error::kind); ask [`panic_info`](Error::panic_info) for a remote
/// panic and [`exitcode`](Error::exitcode) for a process that died.
///
/// # Examples
///
/// ```
/// use multiproc::{ErrorKind, Process};
///
/// fn quit(code: i32) { std::process::exit(code) }
///
/// let err = Process::new(quit, 3).start()?.join().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Exited);
/// assert_eq!(err.exitcode(), Some(3));
/// println!("{err}");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("ProcessError"))]
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    /// All that travels between processes.
    d: ErrorData,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// Builds an error of `kind` whose message is `message`.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                d: ErrorData {
                    kind,
                    message: message.into(),
                    panic: None,
                    exitcode: None,
                    pid: None,
                    data: None,
                    memory: None,
                },
                source: None,
            }),
        }
    }

    /// An OS error while doing `what`.
    pub(crate) fn io(what: &str, err: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, format!("{what} failed: {err}")).with_source(err)
    }

    pub(crate) fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Box::new(source));
        self
    }

    pub(crate) fn with_panic(mut self, panic: PanicInfo) -> Self {
        self.inner.d.panic = Some(panic);
        self
    }

    pub(crate) fn with_exitcode(mut self, code: Option<i32>) -> Self {
        self.inner.d.exitcode = code;
        self
    }

    pub(crate) fn with_memory(mut self, limit: u64, peak: u64) -> Self {
        self.inner.d.memory = Some((limit, peak));
        self
    }

    /// For [`ErrorKind::MemoryExceeded`]: the limit and the worker's peak
    /// resident memory, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// fn hog(mib: usize) -> usize { vec![1u8; mib << 20].len() }
    /// let pool = Pool::builder().processes(1).memory_limit(64 << 20).build()?;
    /// let err = pool.apply(hog, 256).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::MemoryExceeded);
    /// let (limit, _peak) = err.memory().unwrap();
    /// assert_eq!(limit, 64 << 20);
    /// assert_eq!(pool.apply(hog, 1)?, 1 << 20, "the pool goes on");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn memory(&self) -> Option<(u64, u64)> {
        self.inner.d.memory
    }

    pub(crate) fn with_pid(mut self, pid: u32) -> Self {
        self.inner.d.pid = Some(pid);
        self
    }

    pub(crate) fn with_data(mut self, data: Vec<u8>) -> Self {
        self.inner.d.data = Some(data);
        self
    }

    /// The bytes that came with the error: for
    /// [`ErrorKind::BufferTooShort`], the whole message that did not fit.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, connection::Pipe};
    /// let (a, b) = Pipe(true)?;
    /// a.send_bytes(b"too long")?;
    /// let mut small = [0u8; 3];
    /// let err = b.recv_bytes_into(&mut small).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::BufferTooShort);
    /// assert_eq!(err.data(), Some(&b"too long"[..]));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn data(&self) -> Option<&[u8]> {
        self.inner.d.data.as_deref()
    }

    /// What kind of failure this is.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Process};
    /// fn boom(_: ()) { panic!("boom") }
    /// let err = Process::new(boom, ()).start()?.join().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Panicked);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.inner.d.kind
    }

    /// Whether this error is a timeout ([`ErrorKind::Timeout`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// use std::time::Duration;
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    /// let child = Process::new(nap, 10_000).start()?;
    /// assert!(child.join_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// child.kill()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_timeout(&self) -> bool {
        self.inner.d.kind == ErrorKind::Timeout
    }

    /// The remote panic, when the error is [`ErrorKind::Panicked`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn boom(_: ()) { panic!("boom") }
    /// let err = Process::new(boom, ()).start()?.join().unwrap_err();
    /// assert_eq!(err.panic_info().unwrap().message(), "boom");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn panic_info(&self) -> Option<&PanicInfo> {
        self.inner.d.panic.as_ref()
    }

    /// The process's exit code in Python's convention (`n` for an exit with
    /// code `n`, `-signal` for death by a signal), when the error is about a
    /// process that ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// use std::time::Duration;
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    /// let child = Process::new(nap, 10_000).start()?;
    /// child.kill()?;
    /// assert_eq!(child.join().unwrap_err().exitcode(), Some(-9));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn exitcode(&self) -> Option<i32> {
        self.inner.d.exitcode
    }

    /// The pid of the process the error is about, when it is about one (a
    /// pool worker that was lost).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// fn crash(_: ()) { std::process::abort() }
    /// let pool = Pool::new(1)?;
    /// let err = pool.apply(crash, ()).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::WorkerLost);
    /// assert!(err.pid().is_some());
    /// assert_eq!(err.exitcode(), Some(-6));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.inner.d.pid
    }

    /// A copy of this error, for delivering one failure to several waiters
    /// (every item of a lost chunk). The source is kept as text.
    pub(crate) fn duplicate(&self) -> Error {
        let mut copy = Error::new(self.inner.d.kind, self.inner.d.message.clone());
        copy.inner.d.panic = self.inner.d.panic.clone();
        copy.inner.d.exitcode = self.inner.d.exitcode;
        copy.inner.d.pid = self.inner.d.pid;
        copy.inner.d.data = self.inner.d.data.clone();
        copy.inner.d.memory = self.inner.d.memory;
        if let Some(source) = &self.inner.source {
            copy.inner.source = Some(Box::new(std::io::Error::other(source.to_string())));
        }
        copy
    }

    /// The message without the kind prefix.
    pub(crate) fn message(&self) -> &str {
        &self.inner.d.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.d.kind).field("message", &self.inner.d.message);
        if let Some(p) = &self.inner.d.panic {
            d.field("panic", p);
        }
        if let Some(c) = self.inner.d.exitcode {
            d.field("exitcode", &c);
        }
        if let Some(p) = self.inner.d.pid {
            d.field("pid", &p);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.d.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        let kind = match err.kind() {
            ErrorKind::Timeout => std::io::ErrorKind::TimedOut,
            ErrorKind::InvalidInput => std::io::ErrorKind::InvalidInput,
            ErrorKind::Serialize | ErrorKind::Deserialize | ErrorKind::FrameTooLarge => std::io::ErrorKind::InvalidData,
            ErrorKind::Unsupported => std::io::ErrorKind::Unsupported,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, err)
    }
}

/// An I/O error of the caller's own (a socket, a file), so that `?` works
/// in code that returns [`multiproc::Result`](crate::Result) as it does in
/// Python, where every error is an exception. An [`Error`] that went into a
/// `std::io::Error` comes back as it was.
///
/// # Examples
///
/// ```
/// fn first_line(path: &str) -> multiproc::Result<String> {
///     Ok(std::fs::read_to_string(path)?.lines().next().unwrap_or_default().to_string())
/// }
/// let err = first_line("/no/such/file").unwrap_err();
/// assert_eq!(err.kind(), multiproc::ErrorKind::Io);
/// assert!(err.to_string().contains("No such file"), "{err}");
/// ```
impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let inner = err.into_inner().expect("checked above");
            return *inner.downcast::<Error>().expect("checked above");
        }
        let kind = match err.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
            std::io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
            std::io::ErrorKind::UnexpectedEof => ErrorKind::Eof,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("an I/O operation failed: {err}")).with_source(err)
    }
}

/// An `Error` as data, for [`Error`]'s serde impls.
#[derive(Serialize, Deserialize)]
struct ErrorData {
    kind: ErrorKind,
    message: String,
    panic: Option<PanicInfo>,
    exitcode: Option<i32>,
    pid: Option<u32>,
    data: Option<Vec<u8>>,
    /// The limit and the peak, in bytes, of a `MemoryExceeded`.
    memory: Option<(u64, u64)>,
}

/// An error can travel between processes (a child may return
/// `multiproc::Result<T>`): everything but its `source` goes, and the
/// source's text stays in the message.
impl Serialize for Error {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.inner.d.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Error {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Ok(Error { inner: Box::new(Inner { d: ErrorData::deserialize(deserializer)?, source: None }) })
    }
}

/// An error raised inside a child, sent to the parent as data.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    /// A `MemoryExceeded`'s limit and peak (the peak as 8 little-endian
    /// bytes, last in the encoding, so that a signal handler can fill it
    /// in a frame encoded beforehand).
    pub(crate) memory: Option<(u64, [u8; 8])>,
}

impl RemoteError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RemoteError { kind, message: message.into(), memory: None }
    }

    /// The error it stands for, its message given by the receiver.
    pub(crate) fn into_error(self, message: String) -> Error {
        let err = Error::new(self.kind, message);
        match self.memory {
            Some((limit, peak)) => err.with_memory(limit, u64::from_le_bytes(peak)),
            None => err,
        }
    }
}

impl From<&Error> for RemoteError {
    fn from(err: &Error) -> Self {
        let memory = err.memory().map(|(limit, peak)| (limit, peak.to_le_bytes()));
        RemoteError { kind: err.kind(), message: err.message().to_owned(), memory }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small_and_thread_safe() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn display_is_the_message_and_source_is_kept() {
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let err = Error::io("writing the task", io);
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.to_string().starts_with("writing the task failed"));
        assert!(std::error::Error::source(&err).is_some());
        let back: std::io::Error = err.into();
        assert_eq!(back.kind(), std::io::ErrorKind::Other);
    }

    #[test]
    fn panic_info_formats_like_std() {
        let p = PanicInfo::new("boom".into(), Some(("src/x.rs".into(), 3, 9)));
        assert_eq!(p.to_string(), "panicked at src/x.rs:3:9: boom");
        assert_eq!(PanicInfo::new("boom".into(), None).to_string(), "panicked: boom");
    }
}

//! Start methods, the process-wide default, per-use contexts, and
//! `cpu_count`.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::process::Process;
use crate::sys;
use crate::target::{Message, Target};

/// How a child process comes to life.
///
/// | method | how | start + join here | threads in the parent |
/// |---|---|---|---|
/// | [`Fork`](StartMethod::Fork) | `fork()` of the calling process | fastest | hazardous if another thread holds a lock the child needs |
/// | [`Spawn`](StartMethod::Spawn) | `fork()` + `execve("/proc/self/exe")` | slowest | safe |
/// | [`ForkServer`](StartMethod::ForkServer) | a clean, exec'd, single-threaded server forks it | close to fork | safe |
///
/// The default is `ForkServer`, as in Python 3.14.
///
/// # Examples
///
/// ```
/// use multiproc::{Process, StartMethod};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// for method in multiproc::get_all_start_methods() {
///     let child = Process::new(square, 7).start_method(method).start()?;
///     assert_eq!(child.join()?, 49);
/// }
/// assert_eq!("spawn".parse::<StartMethod>()?, StartMethod::Spawn);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StartMethod {
    /// `fork()` the calling process and run the target in the copy.
    ///
    /// The child inherits the parent's memory, fds and globals (multiproc's
    /// own fds excepted). Only the calling thread is copied: if another
    /// thread held a lock at that moment (inside a logging library, an
    /// allocator other than glibc's, or any mutex the target takes), the
    /// child can deadlock. multiproc holds stdout, stderr and its own state
    /// across the fork, and glibc keeps malloc and C stdio consistent, but
    /// nothing can cover every library: prefer `ForkServer` in threaded
    /// programs.
    Fork,
    /// Re-execute this program (`/proc/self/exe`) as a fresh process that
    /// serves the task before `main` would run.
    ///
    /// Nothing is inherited but the environment and stdin/stdout/stderr.
    /// Safe with threads; it pays the cost of a full program start.
    Spawn,
    /// Ask the fork server to fork a child.
    ///
    /// The server is this program, re-executed once (on first use) and
    /// kept single-threaded, so its children start clean, as with `Spawn`,
    /// at nearly the cost of a fork. Children see the environment as it
    /// was when the server started, plus the additions given to
    /// [`Process::env`]. The default.
    ForkServer,
}

impl StartMethod {
    /// Python's name for the method: `"fork"`, `"spawn"` or `"forkserver"`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiproc::StartMethod::ForkServer.name(), "forkserver");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fork" => Ok(StartMethod::Fork),
            "spawn" => Ok(StartMethod::Spawn),
            "forkserver" => Ok(StartMethod::ForkServer),
            other => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("unknown start method {other:?}; use \"fork\", \"spawn\" or \"forkserver\""),
            )),
        }
    }
}

/// `None` until the default is set or first used; then fixed.
static DEFAULT: Mutex<Option<StartMethod>> = Mutex::new(None);

fn default_slot() -> std::sync::MutexGuard<'static, Option<StartMethod>> {
    DEFAULT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets the process-wide default start method.
///
/// As in Python, the default can be set once, before it is used; use
/// [`force_start_method`] to change it later, or a [`Context`] to use
/// another method for some processes only.
///
/// # Errors
///
/// [`ErrorKind::InvalidState`] if the default was already set or used.
///
/// # Examples
///
/// ```
/// use multiproc::StartMethod;
/// // In a fresh program this is the first thing main does; the doctest
/// // process may have used the default already, hence `force`.
/// multiproc::force_start_method(StartMethod::Spawn);
/// assert_eq!(multiproc::get_start_method(), StartMethod::Spawn);
/// assert!(multiproc::set_start_method(StartMethod::Fork).is_err());
/// ```
pub fn set_start_method(method: StartMethod) -> Result<()> {
    let mut slot = default_slot();
    if let Some(current) = *slot {
        return Err(Error::new(
            ErrorKind::InvalidState,
            format!(
                "the start method is already {current}; set it once, before starting any process, or call \
                 force_start_method, or use get_context(method) for the processes that need another method"
            ),
        ));
    }
    *slot = Some(method);
    Ok(())
}

/// Sets the process-wide default start method, even if it was already set
/// or used (Python's `set_start_method(method, force=True)`).
///
/// # Examples
///
/// ```
/// use multiproc::StartMethod;
/// multiproc::force_start_method(StartMethod::Fork);
/// assert_eq!(multiproc::get_start_method(), StartMethod::Fork);
/// multiproc::force_start_method(StartMethod::ForkServer);
/// ```
pub fn force_start_method(method: StartMethod) {
    *default_slot() = Some(method);
}

/// The process-wide default start method if it was set or used, without
/// fixing it (Python's `get_start_method(allow_none=True)`).
pub(crate) fn default_start_method() -> Option<StartMethod> {
    *default_slot()
}

/// The process-wide default start method; this fixes it if it was not set.
///
/// # Examples
///
/// ```
/// let method = multiproc::get_start_method();
/// assert!(multiproc::get_all_start_methods().contains(&method));
/// ```
pub fn get_start_method() -> StartMethod {
    *default_slot().get_or_insert(StartMethod::ForkServer)
}

/// Every start method this platform supports, the default first.
///
/// # Examples
///
/// ```
/// assert_eq!(multiproc::get_all_start_methods().len(), 3);
/// ```
pub fn get_all_start_methods() -> Vec<StartMethod> {
    vec![StartMethod::ForkServer, StartMethod::Spawn, StartMethod::Fork]
}

/// A start method to use for some processes, without touching the
/// process-wide default (Python's `get_context(method)`).
///
/// # Examples
///
/// ```
/// use multiproc::StartMethod;
///
/// fn hello(name: String) -> String { format!("hello, {name}") }
///
/// let ctx = multiproc::get_context(StartMethod::Spawn);
/// let child = ctx.process(hello, "world".to_string()).start()?;
/// assert_eq!(child.join()?, "hello, world");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

/// A start method bound to the things it creates. See [`get_context`].
///
/// # Examples
///
/// ```
/// use multiproc::{StartMethod, get_context};
/// let ctx = get_context(StartMethod::Spawn);
/// assert_eq!(ctx, get_context(StartMethod::Spawn));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

impl Context {
    /// This context's start method.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::StartMethod;
    /// assert_eq!(multiproc::get_context(StartMethod::Fork).start_method(), StartMethod::Fork);
    /// ```
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A [`Process`] that will start with this context's method.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::StartMethod;
    /// fn square(x: i64) -> i64 { x * x }
    /// let ctx = multiproc::get_context(StartMethod::Fork);
    /// assert_eq!(ctx.process(square, -4).start()?.join()?, 16);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn process<F: Target<A, R>, A: Message, R: Message>(&self, target: F, arg: A) -> Process<A, R> {
        Process::new(target, arg).start_method(self.method)
    }
}

/// The number of CPUs this process may use: the size of its CPU affinity
/// mask, like Python's `os.process_cpu_count()`, and at least 1.
///
/// # Examples
///
/// ```
/// assert!(multiproc::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    sys::cpu_count()
}

//! `Process`: a target, its argument and options, ready to start.

use std::ffi::OsString;
use std::fmt;
use std::marker::PhantomData;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use crate::codec;
use crate::context::{StartMethod, get_start_method};
use crate::error::{Error, ErrorKind, Result};
use crate::logging::Levels;
use crate::pool::output;
use crate::process::handle::Child;
use crate::process::{MemoryCap, MemoryPlan};
use crate::runtime::{self, ChildRecord, Launch, Task};
use crate::target::{Message, Target};

/// A process to start: Python's `multiprocessing.Process(target, args)`.
///
/// The target runs in a new OS process with the argument, and its return
/// value comes back through [`Child::join`]. The target must be a fn item
/// or a closure that captures nothing, because it is named to the child by
/// its address in the executable; the argument and the return value travel
/// through serde. Options mirror Python's constructor arguments.
///
/// # Examples
///
/// ```
/// use multiproc::Process;
///
/// fn print_square(n: u64) {
///     println!("Square: {}", n * n);
/// }
///
/// let child = Process::new(print_square, 5).name("squarer").start()?;
/// child.join()?;
/// assert_eq!(child.exitcode(), Some(0));
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A closure that captures is refused at compile time, by `cargo build`
/// (`cargo check` does not see it: no stable Rust bound tells a capturing
/// closure from a fn item), with one error that says what to do instead
/// and names the closure by its place in your source (in the notes:
/// `Nameable::<{closure@src/main.rs:3:41: 3:54}>::CHECK`):
///
/// ```compile_fail,E0080
/// use multiproc::Process;
/// let offset = 10;
/// let p = Process::new(move |x: u64| x + offset, 1).start();
/// ```
///
/// The fix: a fn item that takes what it needs as its argument:
///
/// ```
/// use multiproc::Process;
/// fn add((x, offset): (u64, u64)) -> u64 { x + offset }
/// let offset = 10;
/// assert_eq!(Process::new(add, (1, offset)).start()?.join()?, 11);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A fn pointer, which has no fixed identity, is refused the same way:
///
/// ```compile_fail,E0080
/// use multiproc::Process;
/// fn square(x: u64) -> u64 { x * x }
/// let f: fn(u64) -> u64 = square;
/// let p = Process::new(f, 1).start();
/// ```
#[must_use = "a Process does nothing until start() is called"]
#[doc(alias("target", "args"))]
pub struct Process<A, R> {
    task: Task,
    arg: A,
    name: Option<String>,
    daemon: Option<bool>,
    method: Option<StartMethod>,
    env: Vec<(OsString, OsString)>,
    memory_limit: Option<u64>,
    memory_cap: Option<MemoryCap>,
    forward_output: bool,
    _result: PhantomData<fn() -> R>,
}

impl<A, R> fmt::Debug for Process<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("task", &self.task)
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("start_method", &self.method)
            .field("env", &self.env)
            .field("memory_limit", &self.memory_limit)
            .field("memory_cap", &self.memory_cap)
            .field("forward_output", &self.forward_output)
            .finish_non_exhaustive()
    }
}

impl<A: Message, R: Message> Process<A, R> {
    /// A process that will run `target(arg)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// let child = Process::new(|(a, b): (u32, u32)| a * b, (6, 7)).start()?;
    /// assert_eq!(child.join()?, 42);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new<F: Target<A, R>>(target: F, arg: A) -> Self {
        Process {
            task: Task::of(target),
            arg,
            name: None,
            daemon: None,
            method: None,
            env: Vec::new(),
            memory_limit: None,
            memory_cap: None,
            forward_output: false,
            _result: PhantomData,
        }
    }

    /// The process's name, shown by [`current_process`](crate::current_process)
    /// in the child, in errors, and in `ps` as `multiproc: <name>`. The
    /// default is Python's: `Process-1`, `Process-2`, and `Process-1:1` for
    /// a grandchild.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn my_name(_: ()) -> String { multiproc::current_process().name().to_string() }
    /// let child = Process::new(my_name, ()).name("worker-7").start()?;
    /// assert_eq!(child.join()?, "worker-7");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether the process is a daemon: a daemon child is terminated when
    /// its parent exits normally, while a non-daemon child is waited for
    /// (Python's rule). The default is the daemon flag of the current
    /// process. Whatever the flag, a child exits within about a second of
    /// its parent's death by a signal.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn am_i_daemon(_: ()) -> bool { multiproc::current_process().daemon() }
    /// assert!(Process::new(am_i_daemon, ()).daemon(true).start()?.join()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// The start method for this process, instead of the process-wide
    /// default ([`get_start_method`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Process, StartMethod};
    /// fn pid(_: ()) -> u32 { std::process::id() }
    /// let child = Process::new(pid, ()).start_method(StartMethod::Spawn).start()?;
    /// let pid = child.pid();
    /// assert_eq!(child.join()?, pid);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("get_context", "set_start_method"))]
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Adds or overrides an environment variable in the child (like
    /// `std::process::Command::env`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn read_var(_: ()) -> Option<String> { std::env::var("GREETING").ok() }
    /// let child = Process::new(read_var, ()).env("GREETING", "hi").start()?;
    /// assert_eq!(child.join()?.as_deref(), Some("hi"));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds several environment variables (like `Command::envs`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn read(_: ()) -> String { std::env::var("A").unwrap() + &std::env::var("B").unwrap() }
    /// let child = Process::new(read, ()).envs([("A", "1"), ("B", "2")]).start()?;
    /// assert_eq!(child.join()?, "12");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// A hard cap on the child's memory: `bytes` more than it holds when it
    /// starts. Going past it ends the child, and [`Child::join`] fails with
    /// [`ErrorKind::MemoryExceeded`] ([`Error::memory`] has the limit and
    /// the peak) instead of a generic crash. The mechanism is a memory
    /// cgroup of the child's own where this process may make one, else
    /// `RLIMIT_DATA` ([`MemoryCap`] says which and how each behaves; choose
    /// with [`memory_cap`](Process::memory_cap)). Under `RLIMIT_DATA` the
    /// child exits with code 1, as Python's does after a `MemoryError`;
    /// under a cgroup the OOM killer ends it (exit code −9).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Process};
    /// fn hog(mib: usize) -> usize { vec![1u8; mib << 20].len() }
    /// let child = Process::new(hog, 256).memory_limit(64 << 20).start()?;
    /// let err = child.join().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::MemoryExceeded);
    /// assert_eq!(err.memory().unwrap().0, 64 << 20);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("RLIMIT_DATA", "memory.max", "MemoryError", "ulimit"))]
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// The mechanism behind [`memory_limit`](Process::memory_limit); the
    /// default is [`MemoryCap::detect`]. Asking for
    /// [`MemoryCap::Cgroup`] where this process cannot make cgroups makes
    /// `start()` fail with [`ErrorKind::Unsupported`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{MemoryCap, Process};
    /// fn small(_: ()) -> u8 { 7 }
    /// let child = Process::new(small, ()).memory_limit(64 << 20).memory_cap(MemoryCap::Rlimit).start()?;
    /// assert_eq!(child.join()?, 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn memory_cap(mut self, cap: MemoryCap) -> Self {
        self.memory_cap = Some(cap);
        self
    }

    /// With `true`, what the child writes to its stdout and stderr comes
    /// out of the parent's, each whole line tagged with the child's name
    /// and pid (`[Process-1 4242] ...`), through one reader thread in the
    /// parent, and its `log` records and `tracing` events are emitted
    /// again by the parent's logger (features `log`, `tracing`), as for a
    /// pool's [`forward_output`](crate::PoolBuilder::forward_output).
    /// [`Child::join`] returns once the child's last line is out (or 2 s
    /// after the child ended, if something it started still holds its
    /// output open).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn greet(_: ()) { println!("hello"); }
    /// // Prints "[greeter 4242] hello" on the parent's stdout.
    /// Process::new(greet, ()).name("greeter").forward_output(true).start()?.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("log_to_stderr"))]
    pub fn forward_output(mut self, forward: bool) -> Self {
        self.forward_output = forward;
        self
    }

    /// Starts the process. The argument is serialized first, so a value
    /// that cannot be serialized fails here and no process is created.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Serialize`]: the argument failed to serialize;
    /// - [`ErrorKind::FrameTooLarge`]: the encoded argument is above
    ///   [`max_frame_size`](crate::max_frame_size);
    /// - [`ErrorKind::InvalidInput`]: an environment variable is malformed;
    /// - [`ErrorKind::Io`]: the OS refused (out of processes or fds).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn add_one(x: i32) -> i32 { x + 1 }
    /// let child = Process::new(add_one, 41).start()?;
    /// assert!(child.pid() > 0);
    /// assert_eq!(child.join()?, 42);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn start(self) -> Result<Child<R>> {
        Ok(Child::new(self.launch("the argument", false)?))
    }

    /// The child runs with `RUST_BACKTRACE=0`, for an `RLIMIT_DATA` limit:
    /// Rust prints a backtrace on a refused allocation when asked to, and
    /// that work overwrites the ENOMEM that tells the child's abort handler
    /// what happened.
    pub(crate) fn without_backtraces(self) -> Self {
        self.env("RUST_BACKTRACE", "0").env("RUST_LIB_BACKTRACE", "0")
    }

    /// Starts the process as a pool worker: like [`start`](Process::start),
    /// but the caller reads the control socket itself.
    pub(crate) fn start_worker(self) -> Result<Arc<ChildRecord>> {
        self.launch("the worker's configuration", true)
    }

    /// Encodes the argument (`what`, for errors) and starts the process;
    /// `exclusive`: the caller owns the control socket.
    fn launch(mut self, what: &str, exclusive: bool) -> Result<Arc<ChildRecord>> {
        check_env(&self.env)?;
        if self.memory_limit == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "memory_limit must be at least 1 byte; leave it unset for a child without a cap",
            ));
        }
        let method = self.method.unwrap_or_else(get_start_method);
        let mut arg = codec::encode_with_fds(&self.arg, what)?;
        codec::check_len(arg.bytes.len() as u64, codec::max_frame_size(), &format!("{what}, encoded,"))?;
        // The output pipes travel last among the argument's fds.
        let output = match self.forward_output {
            true => {
                let (child_ends, parent_ends) = output::pipes()?;
                arg.fds.extend(child_ends.0);
                Some(parent_ends)
            }
            false => None,
        };
        let memory = self.memory_limit.map(|limit| MemoryPlan::new(limit, self.memory_cap)).transpose()?;
        if memory.as_ref().is_some_and(|m| m.cap() == MemoryCap::Rlimit) {
            self = self.without_backtraces();
        }
        let child = runtime::launch(Launch {
            task: self.task,
            arg: &arg,
            name: self.name,
            daemon: self.daemon,
            method,
            env: &self.env,
            exclusive,
            memory,
            forward_output: output.as_ref().map(|_| Levels::current()),
        })?;
        if let Some(parent_ends) = output {
            parent_ends.forward(&child.name, child.pid);
        }
        Ok(child)
    }
}

fn check_env(env: &[(OsString, OsString)]) -> Result<()> {
    for (key, value) in env {
        let k = key.as_bytes();
        if k.is_empty() || k.contains(&b'=') || k.contains(&0) || value.as_bytes().contains(&0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the environment variable {key:?}={value:?} cannot be set in a child: a name must be \
                     non-empty and free of '=' and NUL, and a value free of NUL"
                ),
            ));
        }
    }
    Ok(())
}

//! How a hard memory limit is kept: [`MemoryCap`], and what a child needs
//! to know of it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// The mechanism behind a `memory_limit`
/// ([`Process::memory_limit`](crate::Process::memory_limit),
/// [`PoolBuilder::memory_limit`](crate::PoolBuilder::memory_limit)).
///
/// By default the best one this process may use is taken
/// ([`MemoryCap::detect`]): a memory cgroup per child when this process may
/// make groups under its own (it runs as root, or its cgroup subtree is
/// delegated to it), and `RLIMIT_DATA` otherwise. How to tell which one a
/// limit used: `MemoryCap::detect()`, and the message of a
/// [`ErrorKind::MemoryExceeded`] error, which names it.
///
/// # Examples
///
/// ```
/// use multiproc::MemoryCap;
/// match MemoryCap::detect() {
///     MemoryCap::Cgroup => println!("each child gets a memory cgroup of its own"),
///     MemoryCap::Rlimit => println!("RLIMIT_DATA: {}", MemoryCap::why_not_cgroup().unwrap_or_default()),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[doc(alias("cgroup", "memory.max", "RLIMIT_DATA", "RLIMIT_AS"))]
pub enum MemoryCap {
    /// A cgroup of its own per child, v2 (`memory.max`, no swap) or v1's
    /// memory controller (`memory.limit_in_bytes`), made under this
    /// process's own cgroup and removed when the child has been waited
    /// for. Everything the child touches counts (heap, stacks, page cache,
    /// shared memory it writes first); at the limit the kernel's OOM killer
    /// ends the child (`SIGKILL`), and the group's `oom_kill` count tells
    /// that apart from any other kill. The limit counts from when the child
    /// joins its group, at its start.
    Cgroup,
    /// `setrlimit(RLIMIT_DATA)` in the child: its heap and private mappings
    /// may grow by at most the limit from its size at start (a fork child
    /// starts with its parent's heap); an allocation past it is refused,
    /// Rust aborts, and the child's abort handler reports it. Memory mapped
    /// shared (files, [`SharedMemory`](crate::SharedMemory)) is not
    /// capped. Such children run with `RUST_BACKTRACE=0` (a backtrace
    /// printed on the refused allocation would hide its cause).
    Rlimit,
}

impl MemoryCap {
    /// The mechanism a `memory_limit` uses in this process when none is
    /// chosen: [`Cgroup`](MemoryCap::Cgroup) if this process may make
    /// memory groups, else [`Rlimit`](MemoryCap::Rlimit). Found once per
    /// process.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MemoryCap;
    /// let cap = MemoryCap::detect();
    /// assert_eq!(cap == MemoryCap::Rlimit, MemoryCap::why_not_cgroup().is_some());
    /// ```
    pub fn detect() -> MemoryCap {
        match sys::memory_groups() {
            Ok(_) => MemoryCap::Cgroup,
            Err(_) => MemoryCap::Rlimit,
        }
    }

    /// Why memory cgroups cannot be used here (`None` if they can): which
    /// hierarchy was looked at and what was missing.
    ///
    /// # Examples
    ///
    /// ```
    /// if let Some(why) = multiproc::MemoryCap::why_not_cgroup() {
    ///     eprintln!("memory limits use RLIMIT_DATA: {why}");
    /// }
    /// ```
    pub fn why_not_cgroup() -> Option<String> {
        sys::memory_groups().err()
    }

    /// `chosen`, or the detected one; an error if cgroups were chosen and
    /// cannot be used.
    pub(crate) fn resolve(chosen: Option<MemoryCap>) -> Result<MemoryCap> {
        match chosen {
            None => Ok(MemoryCap::detect()),
            Some(MemoryCap::Cgroup) => match sys::memory_groups() {
                Ok(_) => Ok(MemoryCap::Cgroup),
                Err(why) => Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "memory_cap(MemoryCap::Cgroup) was asked for, but this process cannot make memory cgroups \
                         ({why}); run as root or in a delegated cgroup subtree, or use MemoryCap::Rlimit"
                    ),
                )),
            },
            Some(cap) => Ok(cap),
        }
    }

    /// How the mechanism is named in errors.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            MemoryCap::Cgroup => "a memory cgroup of its own; the kernel's OOM killer ended it",
            MemoryCap::Rlimit => "RLIMIT_DATA; an allocation was refused",
        }
    }
}

/// What a child does about its memory limit when it starts: join the
/// group made for it, or set `RLIMIT_DATA` and report a refused
/// allocation on its control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildMemory {
    pub(crate) limit: u64,
    /// The group to join (`MemoryCap::Cgroup`); `None`: `RLIMIT_DATA`.
    pub(crate) group: Option<PathBuf>,
}

/// A child's memory limit as its parent starts it: what the child is told,
/// and the cgroup made for it (kept by the child's record until the child
/// has been waited for).
#[derive(Debug)]
pub(crate) struct MemoryPlan {
    pub(crate) child: ChildMemory,
    pub(crate) group: Option<sys::MemoryGroup>,
}

impl MemoryPlan {
    /// A limit of `limit` bytes with the `chosen` mechanism (or the
    /// detected one); with a cgroup, the group is made now.
    pub(crate) fn new(limit: u64, chosen: Option<MemoryCap>) -> Result<MemoryPlan> {
        let group = match MemoryCap::resolve(chosen)? {
            MemoryCap::Cgroup => Some(
                sys::MemoryGroup::create(limit)
                    .map_err(|e| Error::io("making a memory cgroup for the child's memory_limit", e))?,
            ),
            MemoryCap::Rlimit => None,
        };
        let child = ChildMemory { limit, group: group.as_ref().map(|g| g.path().to_owned()) };
        Ok(MemoryPlan { child, group })
    }

    pub(crate) fn cap(&self) -> MemoryCap {
        if self.child.group.is_some() { MemoryCap::Cgroup } else { MemoryCap::Rlimit }
    }
}

/// The `MemoryExceeded` error of `who` (a process, a pool's task), which
/// went over `limit` with the `cap` mechanism and peaked at `peak` bytes;
/// `then` says what happened next.
pub(crate) fn memory_exceeded(who: &str, limit: u64, peak: u64, cap: MemoryCap, then: &str) -> Error {
    Error::new(
        ErrorKind::MemoryExceeded,
        format!(
            "{who} went over its memory_limit of {limit} bytes ({}), peaking at {peak} bytes; {then}. Raise \
             memory_limit, or make it use less",
            cap.describe()
        ),
    )
    .with_memory(limit, peak)
}

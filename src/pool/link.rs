//! The seam between the dispatcher and one worker: what the dispatcher
//! needs of a worker's end, whatever carries it. A local worker is a child
//! process (its control socket, its pidfd, signals, a status page shared
//! with it); an MPI worker is a rank of the job (feature `mpi`), whose
//! frames the MPI transport's threads carry (`crate::mpi`).
//!
//! The dispatcher, windows, chunk fates and results are the same code for
//! both; only what a rank cannot do differs, and each such place asks the
//! link: a rank cannot be frozen or killed (Open MPI 4 ends the whole job
//! when a rank dies), and its status page is not shared with the parent.

use std::sync::Arc;
use std::time::Instant;

use super::outbox::Outbox;
use crate::codec::FrameStream;
use crate::error::Result;
use crate::runtime::{ChildRecord, registry};
use crate::sys::{self, BorrowedFd, ExitStatus};

#[derive(Debug)]
pub(crate) enum Link {
    /// A worker process on this machine.
    Process(Arc<ChildRecord>),
    /// A rank of the MPI job.
    #[cfg(feature = "mpi")]
    Rank(crate::mpi::RankLink),
}

impl Link {
    /// The stream the dispatcher writes tasks to and reads results from.
    pub(crate) fn control(&self) -> BorrowedFd<'_> {
        match self {
            Link::Process(c) => c.control(),
            #[cfg(feature = "mpi")]
            Link::Rank(r) => r.control(),
        }
    }

    /// Sends what `out` holds, as far as it can without blocking.
    pub(crate) fn flush(&self, out: &mut Outbox) -> std::io::Result<()> {
        match self {
            Link::Process(c) => out.flush(c.control()),
            #[cfg(feature = "mpi")]
            Link::Rank(r) => {
                r.post(out.drain());
                Ok(())
            }
        }
    }

    /// Adds to `stream` what has come from the worker other than through
    /// its socket (an MPI rank's results).
    #[cfg_attr(not(feature = "mpi"), allow(unused_variables))]
    pub(crate) fn take_incoming(&self, stream: &mut FrameStream) {
        match self {
            Link::Process(_) => {}
            #[cfg(feature = "mpi")]
            Link::Rank(r) => r.take_incoming(|bytes| stream.push(bytes)),
        }
    }

    /// Readable once the worker has ended.
    pub(crate) fn ended_fd(&self) -> BorrowedFd<'_> {
        match self {
            Link::Process(c) => c.reaper_fd(),
            #[cfg(feature = "mpi")]
            Link::Rank(r) => r.ended_fd(),
        }
    }

    /// Its process id (on its own host, for a rank).
    pub(crate) fn pid(&self) -> i32 {
        match self {
            Link::Process(c) => c.pid,
            #[cfg(feature = "mpi")]
            Link::Rank(r) => r.pid,
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Link::Process(c) => &c.name,
            #[cfg(feature = "mpi")]
            Link::Rank(r) => &r.name,
        }
    }

    /// Whether the dispatcher can stop it in the middle of an item (freeze,
    /// kill) and shares its status page, so that items in its window can
    /// be cancelled and timed: true for a local process.
    pub(crate) fn is_local(&self) -> bool {
        matches!(self, Link::Process(_))
    }

    /// Sends a local worker `sig`. A rank cannot be signalled: `SIGKILL`
    /// and `SIGTERM` ask it to leave after its current item instead, with
    /// every chunk it has not started skipped.
    pub(crate) fn signal(&self, sig: i32) -> Result<()> {
        match self {
            Link::Process(c) => c.signal(sig),
            #[cfg(feature = "mpi")]
            Link::Rank(r) => r.signal(sig),
        }
    }

    /// The limit and peak of a worker that its memory cgroup's OOM killer
    /// ended (a rank has no cgroup of ours).
    pub(crate) fn memory_kill(&self, status: Option<ExitStatus>) -> Option<(u64, u64)> {
        match self {
            Link::Process(c) => c.memory_kill(status),
            #[cfg(feature = "mpi")]
            Link::Rank(_) => None,
        }
    }

    /// Its exit status, once it has ended.
    pub(crate) fn poll_status(&self) -> Result<Option<ExitStatus>> {
        match self {
            Link::Process(c) => c.poll_status(),
            #[cfg(feature = "mpi")]
            Link::Rank(r) => Ok(r.status()),
        }
    }

    pub(crate) fn has_ended(&self) -> bool {
        match self {
            Link::Process(c) => c.has_ended(),
            #[cfg(feature = "mpi")]
            Link::Rank(r) => r.status().is_some(),
        }
    }

    /// Waits until it has ended, or until `deadline`.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Result<Option<ExitStatus>> {
        match self {
            Link::Process(c) => c.wait(deadline),
            #[cfg(feature = "mpi")]
            Link::Rank(r) => r.wait(deadline),
        }
    }

    /// Its resident memory, for a local process.
    pub(crate) fn rss_bytes(&self) -> Option<u64> {
        match self {
            Link::Process(c) => sys::rss_of(c.pid),
            #[cfg(feature = "mpi")]
            Link::Rank(_) => None,
        }
    }

    /// Its MPI rank and host, for a rank.
    pub(crate) fn rank(&self) -> Option<(u32, String)> {
        match self {
            Link::Process(_) => None,
            #[cfg(feature = "mpi")]
            Link::Rank(r) => Some((r.rank, r.host.clone())),
        }
    }

    /// Forgets a local worker in the process registry (it is buried).
    pub(crate) fn forget(&self) {
        match self {
            Link::Process(c) => registry::lock().remove(c),
            #[cfg(feature = "mpi")]
            Link::Rank(_) => {}
        }
    }
}

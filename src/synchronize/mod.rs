//! Shared state between processes (Python's `multiprocessing.synchronize`
//! and `sharedctypes`): locks, semaphores, events, and plain data in
//! shared memory. Each object is a small memfd that every holder maps, so
//! nothing is left in `/dev/shm`, and each travels to children in
//! `Process::new`'s or a pool initializer's argument as that fd.

mod barrier;
use std::time::{Duration, Instant};

pub(crate) mod block;

/// The longest any wait here sleeps before it looks again: a process that
/// dies between changing shared state and waking its sleepers (or after
/// being woken, before acting on it) then delays the others by at most
/// this, instead of for ever.
pub(crate) const RECHECK: Duration = Duration::from_millis(500);

/// How long to sleep towards a deadline `left` away (`None`: none): at
/// most [`RECHECK`].
pub(crate) fn nap(left: Option<Duration>) -> Duration {
    left.map_or(RECHECK, |l| l.min(RECHECK))
}

/// The time left until `deadline` (`Some(None)` when there is none), or
/// `None` once it has passed.
pub(crate) fn time_left(deadline: Option<Instant>) -> Option<Option<Duration>> {
    match deadline {
        None => Some(None),
        Some(d) => d.checked_duration_since(Instant::now()).filter(|left| !left.is_zero()).map(Some),
    }
}

/// The instant `timeout` from now (a year from now for a timeout too long
/// to add).
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    Instant::now().checked_add(timeout).unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365))
}
mod condition;
mod event;
mod lock;
mod semaphore;
mod value;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard, MAX_WAITERS};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore};
pub use value::{Array, AtomicInt, AtomicValue, Value};

//! `Condition`: wait for a change that another process makes under a
//! lock. Each waiter takes a slot in shared memory and sleeps on its own
//! futex word, so `notify(n)` wakes exactly `n` waiters, oldest first, and
//! a waiter that timed out is never counted as woken.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::block::{Block, Kind, START};
use super::lock::{Lock, LockGuard, RLock, RLockGuard};
use super::nap;
use crate::codec::{FdHandle, FdIn};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// How many processes and threads may wait on one condition at once
/// (each waiter holds a slot, with a robust mutex that tells a dead waiter
/// from a live one).
///
/// # Examples
///
/// ```
/// assert!(multiproc::MAX_WAITERS >= 128);
/// ```
pub const MAX_WAITERS: usize = 240;

const OFF_TICKET: usize = START;
const OFF_SLOTS: usize = START + 64;
/// A slot: state (u32), pid (u32), ticket (u64), then the waiter's mutex.
const SLOT: usize = 64;
const SLOT_MUTEX: usize = 16;
const BLOCK: usize = 16384;

const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;

/// The lock a condition works with.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Over {
    Lock(Lock),
    RLock(RLock),
}

/// A condition variable shared between processes (Python's
/// `multiprocessing.Condition`), over a [`Lock`] or an [`RLock`] (the
/// default, as in Python). Waiting and notifying happen through the guard
/// that [`acquire`](Condition::acquire) returns, so they are only possible
/// with the lock held.
///
/// At most [`MAX_WAITERS`] may wait at once; a waiter that dies while
/// waiting frees its place at the next `notify`.
///
/// # Examples
///
/// ```
/// use multiproc::{Condition, Process, Value};
/// use std::time::Duration;
///
/// fn produce((cond, ready): (Condition, Value<u32>)) -> multiproc::Result<()> {
///     let g = cond.acquire()?;
///     ready.set(1)?;
///     g.notify_all();
///     Ok(())
/// }
///
/// let cond = Condition::new()?;
/// let ready = Value::new(0u32)?;
/// let mut g = cond.acquire()?;
/// let child = Process::new(produce, (cond.clone(), ready.clone())).start()?;
/// let ok = g.wait_for(|| ready.get().map_or(false, |v| v == 1), Some(Duration::from_secs(10)))?;
/// assert!(ok);
/// drop(g);
/// child.join()??;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Condition {
    block: Arc<Block>,
    over: Over,
}

enum Held<'a> {
    Lock(LockGuard<'a>),
    RLock(RLockGuard<'a>),
}

/// A [`Condition`]'s lock, held: wait and notify through it.
///
/// # Examples
///
/// ```
/// let cond = multiproc::Condition::new()?;
/// let mut guard = cond.acquire()?;
/// assert!(!guard.wait_timeout(std::time::Duration::ZERO)?);
/// assert_eq!(guard.notify_all(), 0);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    held: Held<'a>,
}

impl std::fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionGuard").finish_non_exhaustive()
    }
}

impl Condition {
    /// A condition over a new [`RLock`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared memory cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Condition> {
        Condition::build(Over::RLock(RLock::new()?))
    }

    /// A condition over `lock` (Python's `Condition(lock)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared memory cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::Lock::new()?;
    /// let cond = multiproc::Condition::with_lock(lock.clone())?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_lock(lock: Lock) -> Result<Condition> {
        Condition::build(Over::Lock(lock))
    }

    /// A condition over a re-entrant `lock`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared memory cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiproc::Condition::with_rlock(multiproc::RLock::new()?)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_rlock(lock: RLock) -> Result<Condition> {
        Condition::build(Over::RLock(lock))
    }

    fn build(over: Over) -> Result<Condition> {
        let block = Block::new(Kind::Condition, BLOCK, |m| {
            (0..MAX_WAITERS).try_for_each(|i| {
                m.mutex_at(OFF_SLOTS + i * SLOT + SLOT_MUTEX)
                    .init()
                    .map_err(|e| Error::io("creating a condition's waiter slots", e))
            })
        })?;
        Ok(Condition { block, over })
    }

    fn slot_mutex(&self, i: usize) -> sys::RobustMutex<'_> {
        self.block.map().mutex_at(OFF_SLOTS + i * SLOT + SLOT_MUTEX)
    }

    /// Frees slot `i` if its waiter is gone (died, in any state); whether
    /// the slot is free now. The condition's lock is held.
    fn reclaim(&self, i: usize) -> bool {
        let state = self.slot(i).0;
        if state.load(Ordering::SeqCst) == FREE {
            return true;
        }
        let m = self.slot_mutex(i);
        match m.try_lock() {
            Ok(Some(died)) => {
                if died == sys::Locked::OwnerDied {
                    let _ = m.make_consistent();
                }
                state.store(FREE, Ordering::SeqCst);
                m.unlock();
                true
            }
            // A live waiter holds it.
            Ok(None) | Err(_) => false,
        }
    }

    /// Takes the lock; wait and notify through the guard.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the OS refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// let g = cond.acquire()?;
    /// g.notify(1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<ConditionGuard<'_>> {
        let held = match &self.over {
            Over::Lock(l) => Held::Lock(l.acquire()?),
            Over::RLock(l) => Held::RLock(l.acquire()?),
        };
        Ok(ConditionGuard { cond: self, held })
    }

    /// As [`acquire`](Condition::acquire), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if another held the lock throughout.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// let _g = cond.acquire_timeout(std::time::Duration::ZERO)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("acquire"))]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ConditionGuard<'_>> {
        let held = match &self.over {
            Over::Lock(l) => Held::Lock(l.acquire_timeout(timeout)?),
            Over::RLock(l) => Held::RLock(l.acquire_timeout(timeout)?),
        };
        Ok(ConditionGuard { cond: self, held })
    }

    fn slot(&self, i: usize) -> (&AtomicU32, &AtomicU32, &std::sync::atomic::AtomicU64) {
        let at = OFF_SLOTS + i * SLOT;
        let m = self.block.map();
        (m.u32_at(at), m.u32_at(at + 4), m.u64_at(at + 8))
    }
}

impl ConditionGuard<'_> {
    /// Whether the lock's previous holder died holding it, when this guard
    /// took it.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// assert!(!cond.acquire()?.owner_died());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        match &self.held {
            Held::Lock(g) => g.owner_died(),
            Held::RLock(g) => g.owner_died(),
        }
    }

    /// Releases the lock, sleeps until notified (or `timeout` passes), and
    /// takes the lock back; whether it was notified.
    fn sleep(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let cond = self.cond;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let free = (0..MAX_WAITERS).find(|&i| cond.slot(i).0.load(Ordering::Relaxed) == FREE);
        let Some(i) = free.or_else(|| (0..MAX_WAITERS).find(|&i| cond.reclaim(i))) else {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!("more than {MAX_WAITERS} waiters on one Condition; use fewer, or several conditions"),
            ));
        };
        let (state, pid, ticket) = cond.slot(i);
        let mine = cond.slot_mutex(i);
        match mine.try_lock().map_err(|e| Error::io("taking a condition's waiter slot", e))? {
            Some(sys::Locked::Clean) => {}
            Some(sys::Locked::OwnerDied) => {
                mine.make_consistent().map_err(|e| Error::io("recovering a condition's waiter slot", e))?
            }
            None => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    "a free waiter slot of a Condition was held; it is corrupt",
                ));
            }
        }
        let t = cond.block.map().u64_at(OFF_TICKET).fetch_add(1, Ordering::Relaxed);
        ticket.store(t, Ordering::Relaxed);
        pid.store(sys::getpid() as u32, Ordering::Relaxed);
        state.store(WAITING, Ordering::SeqCst);
        let levels = match &self.held {
            Held::Lock(_) => {
                if let Over::Lock(l) = &cond.over {
                    l.raw.unlock();
                }
                0
            }
            Held::RLock(_) => match &cond.over {
                Over::RLock(l) => l.release_all(),
                Over::Lock(_) => unreachable!("the guard matches the lock"),
            },
        };
        let mut slept = Ok(());
        while state.load(Ordering::SeqCst) == WAITING {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                break;
            }
            let nap = nap(left);
            slept = sys::futex_wait(state, WAITING, Some(nap)).map_err(|e| Error::io("waiting on a condition", e));
            if slept.is_err() {
                break;
            }
        }
        // A holder that died meanwhile is not reported here: the caller's
        // predicate is what it must re-check after any wake-up.
        match &cond.over {
            Over::Lock(l) => l.raw.lock(None)?.expect("no deadline"),
            Over::RLock(l) => l.restore(levels)?,
        };
        let notified = state.load(Ordering::SeqCst) == NOTIFIED;
        state.store(FREE, Ordering::SeqCst);
        mine.unlock();
        slept.map(|()| notified)
    }

    /// Waits until notified (Python's `wait()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] with more than [`MAX_WAITERS`] waiters;
    /// [`ErrorKind::Io`] if sleeping fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Condition;
    /// let cond = Condition::new()?;
    /// let other = cond.clone();
    /// let mut g = cond.acquire()?;
    /// let t = std::thread::spawn(move || other.acquire().map(|g| g.notify(1)));
    /// g.wait()?;
    /// t.join().unwrap()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&mut self) -> Result<()> {
        self.sleep(None).map(drop)
    }

    /// Waits until notified or `timeout` passes; whether it was notified
    /// (Python's `wait(timeout)`).
    ///
    /// # Errors
    ///
    /// As [`wait`](ConditionGuard::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// let mut g = cond.acquire()?;
    /// assert!(!g.wait_timeout(std::time::Duration::from_millis(5))?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("wait"))]
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        self.sleep(Some(timeout))
    }

    /// Waits until `predicate` is true, checking it with the lock held
    /// before each wait and after each wake-up, for at most `timeout`
    /// (`None`: no limit); the predicate's last value (Python's
    /// `wait_for`).
    ///
    /// # Errors
    ///
    /// As [`wait`](ConditionGuard::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// let mut g = cond.acquire()?;
    /// assert!(g.wait_for(|| true, None)?);
    /// assert!(!g.wait_for(|| false, Some(std::time::Duration::from_millis(5)))?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_for(&mut self, mut predicate: impl FnMut() -> bool, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if predicate() {
                return Ok(true);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return Ok(false);
            }
            self.sleep(left)?;
        }
    }

    /// Wakes up to `n` waiters, oldest first; returns how many.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// assert_eq!(cond.acquire()?.notify(3), 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn notify(&self, n: usize) -> usize {
        let cond = self.cond;
        let mut waiting: Vec<(u64, usize)> = Vec::new();
        for i in 0..MAX_WAITERS {
            let (state, _, ticket) = cond.slot(i);
            if state.load(Ordering::SeqCst) == FREE || cond.reclaim(i) {
                continue;
            }
            if state.load(Ordering::SeqCst) == WAITING {
                waiting.push((ticket.load(Ordering::Relaxed), i));
            }
        }
        waiting.sort_unstable();
        let woken = waiting.len().min(n);
        for &(_, i) in &waiting[..woken] {
            let state = cond.slot(i).0;
            state.store(NOTIFIED, Ordering::SeqCst);
            sys::futex_wake(state, 1);
        }
        woken
    }

    /// Wakes every waiter; returns how many.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// assert_eq!(cond.acquire()?.notify_all(), 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn notify_all(&self) -> usize {
        self.notify(usize::MAX)
    }
}

impl serde::Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        (self.block.fd_out::<Self>(), &self.over).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let (fd, over): (FdIn<Self>, Over) = serde::Deserialize::deserialize(deserializer)?;
        Ok(Condition { block: Block::from_fd_in(fd, Kind::Condition)?, over })
    }
}

impl FdHandle for Condition {
    const WHAT: &'static str = "a Condition";
}

const _: () = assert!(OFF_SLOTS + MAX_WAITERS * SLOT <= BLOCK && SLOT_MUTEX + sys::MUTEX_BYTES <= SLOT);

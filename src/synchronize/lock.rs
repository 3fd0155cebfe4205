//! `Lock` and `RLock`: robust process-shared mutexes. When a holder dies
//! (even by SIGKILL), the next `acquire` gets the lock, and its guard says
//! so ([`LockGuard::owner_died`]), instead of everyone waiting for ever as
//! in Python.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::block::{Block, Kind, START, block_serde};
use super::deadline_after;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, Locked};

/// Bytes a lock takes in its block: the mutex, then the owner and count
/// of an `RLock`.
pub(crate) const LOCK_SIZE: usize = 128;
/// The holder's pid (its thread id is in the mutex's own lock word).
const OFF_OWNER_PID: usize = 64;
const OFF_COUNT: usize = 72;

/// How many times `acquire` tries a busy lock before sleeping in the
/// kernel; the pause doubles each time, to about 20 µs in all.
const SPINS: u32 = 12;

thread_local! {
    /// The locks this thread holds through guards it gave up with
    /// `leak()`, by identity: only these may be `release()`d, so that a
    /// release can never pull a lock from under a live guard.
    static LEAKED: RefCell<Vec<(u64, u64, usize)>> = const { RefCell::new(Vec::new()) };
}

/// A lock at an offset in a block: the shared part of `Lock`, `RLock`,
/// `Value`, `Array` and `Condition`.
#[derive(Debug, Clone)]
pub(crate) struct RawLock {
    pub(crate) block: Arc<Block>,
    pub(crate) off: usize,
}

impl RawLock {
    /// Initialises the mutex at `off` in a block being created.
    pub(crate) fn init(map: &sys::Mapping, off: usize) -> Result<()> {
        map.mutex_at(off).init().map_err(|e| Error::io("creating a process-shared lock", e))
    }

    /// Takes the lock by `deadline` (`None`: waits for ever): `Some(true)`
    /// if its previous holder had died holding it, `None` on timeout.
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Option<bool>> {
        let m = self.block.map().mutex_at(self.off);
        let io = lock_error;
        let mut got = m.try_lock().map_err(io)?;
        let mut pause = 1u32;
        while got.is_none() && pause < (1 << SPINS) && deadline.is_none_or(|d| Instant::now() < d) {
            for _ in 0..pause {
                std::hint::spin_loop();
            }
            pause *= 2;
            got = m.try_lock().map_err(io)?;
        }
        if got.is_none() {
            got = m.lock(deadline).map_err(io)?;
        }
        Ok(match got {
            None => None,
            Some(Locked::Clean) => Some(false),
            Some(Locked::OwnerDied) => {
                m.make_consistent().map_err(io)?;
                Some(true)
            }
        })
    }

    pub(crate) fn unlock(&self) {
        self.block.map().mutex_at(self.off).unlock();
    }

    /// Whether the lock's holder died holding it (nobody has taken it
    /// since).
    pub(crate) fn holder_died(&self) -> bool {
        self.block.map().mutex_at(self.off).holder_died()
    }

    /// Unlocks if the calling thread holds the lock.
    fn try_unlock(&self) -> Result<()> {
        self.block.map().mutex_at(self.off).try_unlock().map_err(|_| {
            Error::new(
                ErrorKind::InvalidState,
                "release() of a lock this thread does not hold; a lock is released by the thread that acquired it \
                 (the OS records the owner so that its death can be detected)",
            )
        })
    }

    fn word(&self, at: usize) -> &std::sync::atomic::AtomicU32 {
        self.block.map().u32_at(self.off + at)
    }

    fn key(&self) -> (u64, u64, usize) {
        let (dev, ino) = self.block.id();
        (dev, ino, self.off)
    }

    /// Records a leaked guard of this lock, held by this thread.
    fn leaked(&self) {
        LEAKED.with(|l| l.borrow_mut().push(self.key()));
    }

    /// Takes back one leaked guard's record, if this thread has one.
    fn unleak(&self) -> bool {
        let key = self.key();
        LEAKED.with(|l| {
            let mut l = l.borrow_mut();
            l.iter().rposition(|k| *k == key).map(|i| l.swap_remove(i)).is_some()
        })
    }
}

fn not_leaked(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidState,
        format!(
            "release() of a {what} that this thread does not hold (Python says \"released too many times\"): a \
             {what} is released by the thread that acquired it. Holding it through a guard, drop the guard; for \
             Python's acquire() ... release() style, call acquire()?.leak() first"
        ),
    )
}

/// An error from the OS while taking a lock: `EDEADLK` means this thread
/// holds it already.
fn lock_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::Deadlock {
        return Error::new(
            ErrorKind::InvalidState,
            "this thread already holds the lock, and a Lock is not re-entrant: use an RLock, or do several updates \
             under one acquisition (Value::update with the guard)",
        );
    }
    Error::io("taking a process-shared lock", e)
}

fn timeout_error(what: &str, d: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("the {what} was still held by another after {d:?}; try again, or wait longer"),
    )
}

/// A lock shared between processes (Python's `multiprocessing.Lock`).
///
/// `acquire` returns a guard that releases on drop. If the process or
/// thread holding the lock dies, the next `acquire` succeeds and its guard
/// reports [`owner_died`](LockGuard::owner_died): whatever the lock
/// protected may be half updated, so check or repair it. The lock itself
/// stays usable. Unlike Python's `Lock`, a lock is released by the thread
/// that acquired it (another gets an error), because that is what lets
/// the OS notice a dead holder.
///
/// Clone it, or pass it to a child in `Process::new`'s or a pool
/// initializer's argument: every copy is the same lock.
///
/// # Examples
///
/// ```
/// use multiproc::{Lock, Process};
///
/// fn work(lock: Lock) -> multiproc::Result<bool> {
///     let guard = lock.acquire()?;
///     Ok(guard.owner_died())
/// }
///
/// let lock = Lock::new()?;
/// let child = Process::new(work, lock.clone()).start()?;
/// assert!(!child.join()??);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Lock {
    pub(crate) raw: RawLock,
}

/// Proof that this thread holds a [`Lock`]; dropping it releases the lock.
///
/// # Examples
///
/// ```
/// let lock = multiproc::Lock::new()?;
/// {
///     let _guard = lock.acquire()?;
///     assert!(lock.try_acquire().is_err(), "held by this thread");
/// }
/// assert!(lock.try_acquire()?.is_some(), "released by the drop");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a RawLock,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl LockGuard<'_> {
    /// Whether the previous holder died holding the lock (the state it
    /// protected may be half updated).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::Lock::new()?;
    /// assert!(!lock.acquire()?.owner_died());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Whether this guard holds `lock` (the same shared lock, through any
    /// handle).
    pub(crate) fn is_of(&self, lock: &Lock) -> bool {
        let (a, b) = (&self.lock.block, &lock.raw.block);
        self.lock.off == lock.raw.off && (Arc::ptr_eq(a, b) || a.id() == b.id())
    }

    /// Releases the lock (the same as dropping the guard).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::Lock::new()?;
    /// lock.acquire()?.release();
    /// assert!(lock.try_acquire()?.is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(self) {}

    /// Gives the guard up and keeps the lock held, for Python's
    /// `acquire()` … `release()` style: [`Lock::release`] then releases it,
    /// in this thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::Lock::new()?;
    /// lock.acquire()?.leak();
    /// // ... work under the lock ...
    /// lock.release()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn leak(self) {
        self.lock.leaked();
        std::mem::forget(self);
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

impl Lock {
    /// A new, unlocked lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared memory cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::Lock::new()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Lock> {
        let block = Block::new(Kind::Lock, 4096, |m| RawLock::init(m, START))?;
        Ok(Lock { raw: RawLock { block, off: START } })
    }

    fn guard(&self, died: bool) -> LockGuard<'_> {
        LockGuard { lock: &self.raw, owner_died: died, _not_send: PhantomData }
    }

    /// Waits for the lock and takes it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if this thread holds the lock already
    /// (a `Lock` is not re-entrant; waiting would never end);
    /// [`ErrorKind::Io`] if the OS refuses otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ErrorKind;
    /// let lock = multiproc::Lock::new()?;
    /// let guard = lock.acquire()?;
    /// assert_eq!(lock.acquire().unwrap_err().kind(), ErrorKind::InvalidState, "not re-entrant");
    /// drop(guard);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        let died = self.raw.lock(None)?.expect("no deadline");
        Ok(self.guard(died))
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if another still held it (a zero timeout only
    /// tries).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = multiproc::Lock::new()?;
    /// let _held = lock.acquire()?;
    /// let other = lock.clone();
    /// let err = std::thread::spawn(move || other.acquire_timeout(Duration::from_millis(10)).map(drop))
    ///     .join()
    ///     .unwrap()
    ///     .unwrap_err();
    /// assert!(err.is_timeout());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("acquire"))]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        match self.raw.lock(Some(deadline_after(timeout)))? {
            Some(died) => Ok(self.guard(died)),
            None => Err(timeout_error("lock", timeout)),
        }
    }

    /// Takes the lock if it is free; `None` if another holds it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the OS refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::Lock::new()?;
    /// assert!(lock.try_acquire()?.is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("acquire"))]
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
        let m = self.raw.block.map().mutex_at(self.raw.off);
        Ok(match m.try_lock().map_err(lock_error)? {
            None => None,
            Some(Locked::Clean) => Some(self.guard(false)),
            Some(Locked::OwnerDied) => {
                m.make_consistent().map_err(|e| Error::io("recovering a lock", e))?;
                Some(self.guard(true))
            }
        })
    }

    /// Releases a lock this thread acquired and whose guard it gave up with
    /// [`LockGuard::leak`], Python's `acquire()` … `release()` style. (A
    /// guard lost with `std::mem::forget` cannot be released this way: the
    /// lock stays held, safely, and its memory is never unmapped.)
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if this thread holds the lock through
    /// no leaked guard.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::Lock::new()?;
    /// lock.acquire()?.leak();
    /// lock.release()?;
    /// assert!(lock.release().is_err(), "not held any more");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(&self) -> Result<()> {
        if !self.raw.unleak() {
            return Err(not_leaked("lock"));
        }
        self.raw.try_unlock()
    }
}

block_serde!(Lock, Kind::Lock, "a Lock", |b| Ok(Lock { raw: RawLock { block: b, off: START } }), |s| &s.raw.block);

/// A re-entrant lock shared between processes (Python's
/// `multiprocessing.RLock`): the thread that holds it may acquire it again,
/// and must release it as many times. Its owner (process and thread) is
/// recorded; a release by anyone else is an error. A dead holder is
/// reported as for [`Lock`].
///
/// # Examples
///
/// ```
/// let lock = multiproc::RLock::new()?;
/// let outer = lock.acquire()?;
/// let inner = lock.acquire()?;
/// assert_eq!(lock.owner(), Some((std::process::id(), outer.count())));
/// drop(inner);
/// drop(outer);
/// assert_eq!(lock.owner(), None);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RLock {
    raw: RawLock,
}

/// Proof that this thread holds an [`RLock`] (once more); dropping it
/// releases one level.
///
/// # Examples
///
/// ```
/// let lock = multiproc::RLock::new()?;
/// let outer = lock.acquire()?;
/// drop(lock.acquire()?);
/// assert_eq!(outer.count(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl RLockGuard<'_> {
    /// Whether the previous holder died holding the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::RLock::new()?;
    /// assert!(!lock.acquire()?.owner_died());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// How many times this thread holds the lock now.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::RLock::new()?;
    /// let a = lock.acquire()?;
    /// let b = lock.acquire()?;
    /// assert_eq!(b.count(), 2);
    /// # drop((b, a));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn count(&self) -> u32 {
        self.lock.raw.word(OFF_COUNT).load(Ordering::Relaxed)
    }

    /// Gives the guard up and keeps its level held: [`RLock::release`]
    /// then releases it, in this thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::RLock::new()?;
    /// lock.acquire()?.leak();
    /// lock.release()?;
    /// assert_eq!(lock.owner(), None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn leak(self) {
        self.lock.raw.leaked();
        std::mem::forget(self);
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release_one();
    }
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared memory cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::RLock::new()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<RLock> {
        let block = Block::new(Kind::RLock, 4096, |m| RawLock::init(m, START))?;
        Ok(RLock { raw: RawLock { block, off: START } })
    }

    /// Whether this thread holds the lock: the mutex's own record of its
    /// holder (which the kernel marks when the holder dies, so a thread
    /// that reuses a dead holder's id is not taken for it).
    fn mine(&self) -> bool {
        self.raw.block.map().mutex_at(self.raw.off).owner_tid() == Some(sys::gettid() as u32)
    }

    fn enter(&self, deadline: Option<Instant>) -> Result<Option<RLockGuard<'_>>> {
        if self.mine() {
            self.raw.word(OFF_COUNT).fetch_add(1, Ordering::Relaxed);
            return Ok(Some(RLockGuard { lock: self, owner_died: false, _not_send: PhantomData }));
        }
        let Some(died) = self.raw.lock(deadline)? else {
            return Ok(None);
        };
        self.raw.word(OFF_OWNER_PID).store(sys::getpid() as u32, Ordering::Relaxed);
        self.raw.word(OFF_COUNT).store(1, Ordering::Relaxed);
        Ok(Some(RLockGuard { lock: self, owner_died: died, _not_send: PhantomData }))
    }

    /// Takes the lock, or one more level of it if this thread holds it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the OS refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::RLock::new()?;
    /// let _a = lock.acquire()?;
    /// let _b = lock.acquire()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<RLockGuard<'_>> {
        Ok(self.enter(None)?.expect("no deadline"))
    }

    /// As [`acquire`](RLock::acquire), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if another thread still held it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = multiproc::RLock::new()?;
    /// let _a = lock.acquire_timeout(Duration::ZERO)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("acquire"))]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>> {
        self.enter(Some(deadline_after(timeout)))?.ok_or_else(|| timeout_error("re-entrant lock", timeout))
    }

    /// As [`acquire`](RLock::acquire) if it need not wait; `None` if another
    /// thread holds it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the OS refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::RLock::new()?;
    /// assert!(lock.try_acquire()?.is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("acquire"))]
    pub fn try_acquire(&self) -> Result<Option<RLockGuard<'_>>> {
        self.enter(Some(Instant::now()))
    }

    /// Releases one level this thread gave up with [`RLockGuard::leak`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if this thread holds no leaked level
    /// (another process or thread holds the lock, or nobody, or only
    /// through live guards).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::RLock::new()?;
    /// lock.acquire()?.leak();
    /// lock.release()?;
    /// assert!(lock.release().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(&self) -> Result<()> {
        if !self.mine() || !self.raw.unleak() {
            return Err(not_leaked("re-entrant lock"));
        }
        self.release_one()
    }

    fn release_one(&self) -> Result<()> {
        if !self.mine() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "release() of a re-entrant lock this thread does not hold; only its owner (the thread that acquired \
                 it) may release it",
            ));
        }
        if self.raw.word(OFF_COUNT).fetch_sub(1, Ordering::Relaxed) == 1 {
            self.raw.word(OFF_OWNER_PID).store(0, Ordering::Relaxed);
            self.raw.unlock();
        }
        Ok(())
    }

    /// Who holds the lock: `(pid, levels)`, or `None` if it is free (or
    /// its holder died).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiproc::RLock::new()?;
    /// assert_eq!(lock.owner(), None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.raw.block.map().mutex_at(self.raw.off).owner_tid()?;
        match self.raw.word(OFF_OWNER_PID).load(Ordering::Relaxed) {
            0 => None,
            pid => Some((pid, self.raw.word(OFF_COUNT).load(Ordering::Relaxed))),
        }
    }

    /// Releases every level this thread holds (for a condition's wait) and
    /// returns how many there were.
    pub(crate) fn release_all(&self) -> u32 {
        let levels = self.raw.word(OFF_COUNT).swap(0, Ordering::Relaxed);
        self.raw.word(OFF_OWNER_PID).store(0, Ordering::Relaxed);
        self.raw.unlock();
        levels
    }

    /// Takes the lock back with `levels` levels after [`release_all`](RLock::release_all);
    /// whether a holder died meanwhile.
    pub(crate) fn restore(&self, levels: u32) -> Result<bool> {
        let died = self.raw.lock(None)?.expect("no deadline");
        self.raw.word(OFF_OWNER_PID).store(sys::getpid() as u32, Ordering::Relaxed);
        self.raw.word(OFF_COUNT).store(levels, Ordering::Relaxed);
        Ok(died)
    }
}

block_serde!(RLock, Kind::RLock, "an RLock", |b| Ok(RLock { raw: RawLock { block: b, off: START } }), |s| &s.raw.block);

const _: () = assert!(sys::MUTEX_BYTES <= OFF_OWNER_PID && OFF_COUNT + 4 <= LOCK_SIZE);

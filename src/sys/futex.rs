//! Futexes and process-shared robust mutexes, on words inside a
//! [`Mapping`].

use std::io;
use std::marker::PhantomData;
use std::mem::size_of;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::thread::futex;

use super::Mapping;

/// The kernel's robust-futex bits in a mutex's lock word.
const OWNER_DIED: u32 = 0x4000_0000;
const TID_MASK: u32 = 0x3fff_ffff;

/// The bytes a [`RobustMutex`] takes in a mapping.
pub(crate) const MUTEX_BYTES: usize = size_of::<libc::pthread_mutex_t>();

/// A process-shared, robust `pthread_mutex_t` in a mapping: when its owner
/// dies, the next locker is told ([`Locked::OwnerDied`]) instead of waiting
/// forever.
#[derive(Debug)]
pub(crate) struct RobustMutex<'a> {
    m: *mut libc::pthread_mutex_t,
    _mapping: PhantomData<&'a Mapping>,
}

/// How a lock was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// The usual case.
    Clean,
    /// The previous owner died holding it; the state it guarded may be half
    /// changed. [`RobustMutex::make_consistent`] before unlocking.
    OwnerDied,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
}

impl Mapping {
    /// The robust mutex at `offset` (see [`RobustMutex::init`]).
    pub(crate) fn mutex_at(&self, offset: usize) -> RobustMutex<'_> {
        RobustMutex { m: self.at::<libc::pthread_mutex_t>(offset), _mapping: PhantomData }
    }
}

impl RobustMutex<'_> {
    /// Initialises a fresh (zeroed, not yet shared) mutex.
    #[doc(alias("pthread_mutex_init", "PTHREAD_MUTEX_ROBUST"))]
    pub(crate) fn init(&self) -> io::Result<()> {
        // SAFETY: the attribute object lives on this stack frame and is
        // initialised before use and destroyed after; `self.m` points into
        // a live mapping that no other process uses yet (a new queue).
        unsafe {
            let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let result = (|| {
                check(libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED))?;
                check(libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST))?;
                // A second lock by the holder fails (EDEADLK) instead of
                // hanging for ever.
                check(libc::pthread_mutexattr_settype(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ERRORCHECK))?;
                check(libc::pthread_mutex_init(self.m, attr.as_ptr()))
            })();
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
            result
        }
    }

    fn outcome(rc: libc::c_int) -> io::Result<Option<Locked>> {
        match rc {
            0 => Ok(Some(Locked::Clean)),
            libc::EOWNERDEAD => Ok(Some(Locked::OwnerDied)),
            libc::EBUSY | libc::ETIMEDOUT => Ok(None),
            rc => Err(io::Error::from_raw_os_error(rc)),
        }
    }

    /// Locks, waiting until `deadline` (for ever with `None`); `Ok(None)` if
    /// the deadline passed first. A deadline already past only tries.
    #[doc(alias("pthread_mutex_lock", "pthread_mutex_clocklock"))]
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> io::Result<Option<Locked>> {
        // SAFETY: `self.m` is an initialised process-shared mutex in a live
        // mapping (`init` ran in the process that created it); the deadline
        // is a valid timespec on the clock named with it.
        let rc = unsafe {
            match deadline {
                None => libc::pthread_mutex_lock(self.m),
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    None => libc::pthread_mutex_trylock(self.m),
                    Some(left) if left.is_zero() => libc::pthread_mutex_trylock(self.m),
                    Some(left) => {
                        let at = monotonic_after(left);
                        pthread_mutex_clocklock(self.m, libc::CLOCK_MONOTONIC, &at)
                    }
                },
            }
        };
        Self::outcome(rc)
    }

    /// Marks the state as repaired after [`Locked::OwnerDied`].
    #[doc(alias("pthread_mutex_consistent"))]
    pub(crate) fn make_consistent(&self) -> io::Result<()> {
        // SAFETY: as for `lock`; called by the thread that holds the lock.
        check(unsafe { libc::pthread_mutex_consistent(self.m) })
    }

    /// Unlocks (the calling thread holds the lock).
    pub(crate) fn unlock(&self) {
        let _ = self.try_unlock();
    }

    /// Unlocks if the calling thread holds the lock; `EPERM` otherwise (a
    /// robust mutex knows its owner).
    #[doc(alias("pthread_mutex_unlock"))]
    pub(crate) fn try_unlock(&self) -> io::Result<()> {
        // SAFETY: as for `lock`; glibc checks the owner of a robust mutex
        // and refuses (EPERM) a thread that does not hold it.
        check(unsafe { libc::pthread_mutex_unlock(self.m) })
    }

    /// The id of the thread that holds the lock, read from its futex word
    /// (the kernel's robust-futex ABI: the owner's TID, marked
    /// `FUTEX_OWNER_DIED` by the kernel when that thread ends); `None` if
    /// it is free or its holder died.
    pub(crate) fn owner_tid(&self) -> Option<u32> {
        let word = self.word();
        (word & OWNER_DIED == 0 && word & TID_MASK != 0).then_some(word & TID_MASK)
    }

    /// Whether the lock's holder died holding it, and nobody took it since.
    pub(crate) fn holder_died(&self) -> bool {
        self.word() & OWNER_DIED != 0
    }

    fn word(&self) -> u32 {
        // SAFETY: glibc's `pthread_mutex_t` begins with its lock word, an
        // aligned `int` that the kernel and other threads change
        // atomically, so reading it as an `AtomicU32` is sound.
        unsafe { AtomicU32::from_ptr(self.m.cast::<u32>()) }.load(Ordering::SeqCst)
    }

    /// Takes the lock if it is free, without waiting.
    #[doc(alias("pthread_mutex_trylock"))]
    pub(crate) fn try_lock(&self) -> io::Result<Option<Locked>> {
        // SAFETY: as for `lock`.
        Self::outcome(unsafe { libc::pthread_mutex_trylock(self.m) })
    }
}

unsafe extern "C" {
    /// glibc 2.30+: `pthread_mutex_timedlock` against a chosen clock, so
    /// that a step of the wall clock cannot stretch or cut a timeout.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// `CLOCK_MONOTONIC` now plus `d`, for `pthread_mutex_clocklock`.
fn monotonic_after(d: Duration) -> libc::timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let at = Duration::new(now.tv_sec as u64, now.tv_nsec as u32).saturating_add(d);
    libc::timespec { tv_sec: at.as_secs().min(i64::MAX as u64) as libc::time_t, tv_nsec: at.subsec_nanos() as _ }
}

/// Sleeps while `word` holds `expected`, until woken or `timeout` passes.
/// Spurious returns happen: callers re-check their condition.
#[doc(alias("futex", "FUTEX_WAIT"))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|d| rustix::thread::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(()) | Err(Errno::AGAIN | Errno::INTR | Errno::TIMEDOUT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Wakes up to `n` processes sleeping on `word` (`u32::MAX`: all; the
/// kernel reads the count as an `int`, so it is capped at `i32::MAX`,
/// where `u32::MAX` would wake one at most).
#[doc(alias("futex", "FUTEX_WAKE"))]
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    let _ = futex::wake(word, futex::Flags::empty(), n.min(i32::MAX as u32));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::memfd;
    use rustix::fd::AsFd;

    #[test]
    fn the_robust_mutex_locks_times_out_and_unlocks() {
        let fd = memfd("test", 4096).unwrap();
        let a = Mapping::new(fd.as_fd(), 0, 4096).unwrap();
        let m = a.mutex_at(64);
        m.init().unwrap();
        assert_eq!(m.lock(None).unwrap(), Some(Locked::Clean));
        let other = std::thread::scope(|s| {
            s.spawn(|| {
                let m = a.mutex_at(64);
                (
                    m.lock(Some(Instant::now())).unwrap(),
                    m.lock(Some(Instant::now() + Duration::from_millis(20))).unwrap(),
                )
            })
            .join()
            .unwrap()
        });
        assert_eq!(other, (None, None));
        m.unlock();
        assert_eq!(m.lock(Some(Instant::now())).unwrap(), Some(Locked::Clean));
        m.unlock();
    }

    #[test]
    fn a_futex_wait_returns_on_timeout_or_a_changed_word() {
        let w = AtomicU32::new(1);
        futex_wait(&w, 0, None).unwrap();
        futex_wait(&w, 1, Some(Duration::from_millis(1))).unwrap();
        futex_wake(&w, 1);
    }
}

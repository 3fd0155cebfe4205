//! Shared memory: memfd files mapped `MAP_SHARED`, process-shared robust
//! mutexes inside them, and futex waits on words inside them.
//!
//! A [`Mapping`] hands out atomics and byte copies at offsets that it checks
//! against its length and alignment, so callers never touch raw pointers.
//! What another process may write concurrently is the caller's protocol:
//! multiproc reads and writes ring bytes only under the ring's mutex.

use std::io;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::MemfdFlags;
use rustix::io::Errno;
use rustix::mm::{MapFlags, MremapFlags, ProtFlags};
use rustix::thread::futex;

/// `memfd_create(name, MFD_CLOEXEC)` sized to `len` bytes (zero-filled;
/// pages are allocated only as they are touched).
pub(crate) fn memfd(name: &str, len: u64) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, len)?;
    Ok(fd)
}

/// Grows the file behind `fd` to `len` bytes (never shrinks it).
pub(crate) fn grow_file(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    if file_len(fd)? < len {
        rustix::fs::ftruncate(fd, len)?;
    }
    Ok(())
}

/// The size of the file behind `fd`.
pub(crate) fn file_len(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// A `MAP_SHARED` read-write mapping of part of a file.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes; every
// access goes through atomics or through copies whose exclusivity the
// callers guarantee with a process-shared mutex (see the module docs).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from `offset` (a multiple of the page size).
    pub(crate) fn new(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Mapping> {
        assert!(len > 0, "an empty mapping");
        // SAFETY: a fresh mapping at an address the kernel picks; it aliases
        // no Rust object, and it is unmapped only by `Drop`.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                offset,
            )?
        };
        Ok(Mapping { ptr: NonNull::new(ptr.cast()).expect("mmap never returns null on success"), len })
    }

    /// Grows (or shrinks) the mapping to `len` bytes; it may move, which
    /// `&mut self` makes safe: no reference into it is alive.
    pub(crate) fn resize(&mut self, len: usize) -> io::Result<()> {
        if len == self.len {
            return Ok(());
        }
        // SAFETY: `self.ptr`/`self.len` describe a live mapping made by
        // `Mapping::new`; `&mut self` guarantees that nothing borrows it.
        let ptr = unsafe { rustix::mm::mremap(self.ptr.as_ptr().cast(), self.len, len, MremapFlags::MAYMOVE)? };
        self.ptr = NonNull::new(ptr.cast()).expect("mremap never returns null on success");
        self.len = len;
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn check<T>(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "shared-memory access out of bounds: {offset}+{len} > {}",
            self.len
        );
        assert!(offset.is_multiple_of(align_of::<T>()), "misaligned shared-memory access at {offset}");
    }

    /// The `AtomicU32` at `offset`.
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.check::<AtomicU32>(offset, size_of::<AtomicU32>());
        // SAFETY: in bounds and aligned (checked); the memory lives as long
        // as `&self`, and an `AtomicU32` may be shared between threads and
        // processes.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }

    /// The `AtomicU64` at `offset`.
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.check::<AtomicU64>(offset, size_of::<AtomicU64>());
        // SAFETY: as for `u32_at`.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }

    /// Copies `bytes` in at `offset`.
    pub(crate) fn write(&self, offset: usize, bytes: &[u8]) {
        self.check::<u8>(offset, bytes.len());
        // SAFETY: the destination is in bounds (checked) and cannot overlap
        // `bytes`, which is Rust memory outside any mapping we write.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(offset), bytes.len()) }
    }

    /// The bytes at `offset..offset + len`, for reading while the caller's
    /// protocol keeps every writer away from them.
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        self.check::<u8>(offset, len);
        // SAFETY: in bounds (checked), alive as long as `&self`; the
        // caller's lock keeps other writers off this range while it reads.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }

    /// Lends the bytes at `offset..offset + len` to `f` for writing, while
    /// the caller's protocol (a held process-shared lock) keeps every other
    /// reader and writer in this process and others away from them.
    pub(crate) fn with_bytes_mut<R>(&self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        self.check::<u8>(offset, len);
        // SAFETY: in bounds (checked) and alive for the call; the slice does
        // not escape `f`, and the caller's lock makes this the only access
        // to the range meanwhile.
        f(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) })
    }

    /// Moves `len` bytes from `from` to `to` inside the mapping.
    pub(crate) fn copy_within(&self, from: usize, to: usize, len: usize) {
        self.check::<u8>(from, len);
        self.check::<u8>(to, len);
        // SAFETY: both ranges are in bounds (checked); `copy` allows
        // overlap.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(from), self.ptr.as_ptr().add(to), len) }
    }

    /// The robust mutex at `offset` (see [`RobustMutex::init`]).
    pub(crate) fn mutex_at(&self, offset: usize) -> RobustMutex<'_> {
        self.check::<libc::pthread_mutex_t>(offset, size_of::<libc::pthread_mutex_t>());
        // SAFETY: in bounds and aligned (checked).
        let m = unsafe { self.ptr.as_ptr().add(offset).cast::<libc::pthread_mutex_t>() };
        RobustMutex { m, _mapping: PhantomData }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made by `new`/`resize`, unmapped once; no
        // borrow of it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

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

impl RobustMutex<'_> {
    /// Initialises a fresh (zeroed, not yet shared) mutex.
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
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    let _ = futex::wake(word, futex::Flags::empty(), n.min(i32::MAX as u32));
}

/// Fills `buf` with random bytes from the kernel.
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_mappings_of_one_memfd_share_bytes_and_grow() {
        let fd = memfd("test", 4096).unwrap();
        let a = Mapping::new(fd.as_fd(), 0, 4096).unwrap();
        let mut b = Mapping::new(fd.as_fd(), 0, 4096).unwrap();
        a.write(8, b"hello");
        assert_eq!(b.bytes(8, 5), b"hello");
        a.u64_at(16).store(7, Ordering::SeqCst);
        assert_eq!(b.u64_at(16).load(Ordering::SeqCst), 7);
        grow_file(fd.as_fd(), 3 * 4096).unwrap();
        b.resize(3 * 4096).unwrap();
        b.write(2 * 4096, b"far");
        b.copy_within(2 * 4096, 100, 3);
        assert_eq!(a.bytes(100, 3), b"far");
        assert_eq!(file_len(fd.as_fd()).unwrap(), 3 * 4096);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_access_panics() {
        let fd = memfd("test", 4096).unwrap();
        let a = Mapping::new(fd.as_fd(), 0, 4096).unwrap();
        a.write(4094, b"abc");
    }

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
        let mut r = [0u8; 32];
        random_bytes(&mut r).unwrap();
        assert_ne!(r, [0u8; 32]);
    }
}

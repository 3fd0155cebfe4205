//! `Barrier`: `parties` processes (or threads) wait until all have
//! arrived, then all go on. Its state sits under a robust lock in shared
//! memory, and waiters sleep on a generation counter.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::block::{Block, Kind, START, block_serde};
use super::lock::{LOCK_SIZE, RawLock};
use super::nap;
use crate::codec::{self, kind};
use crate::error::{Error, ErrorKind, PanicInfo, Result};
use crate::runtime::{Task, TaskId};
use crate::sys;

const F: usize = START + LOCK_SIZE;
const OFF_PARTIES: usize = F;
const OFF_COUNT: usize = F + 4;
/// Bumped when a round ends (passed or broken): the futex word.
const OFF_GENERATION: usize = F + 8;
/// Whether the barrier is broken (until `reset`).
const OFF_BROKEN: usize = F + 12;
/// How each of the last 64 rounds ended: bit `generation % 64` set if it
/// broke, clear if it passed.
const OFF_BROKEN_ROUNDS: usize = F + 16;
const OFF_HAS_ACTION: usize = F + 24;
const OFF_ACTION: usize = F + 32;
const OFF_ACTION_TAG: usize = F + 40;
/// The timeout `wait` uses, in nanoseconds (0: none).
const OFF_DEFAULT_TIMEOUT: usize = F + 48;

/// A barrier shared between processes (Python's
/// `multiprocessing.Barrier`): [`wait`](Barrier::wait) blocks until
/// `parties` callers are waiting, then releases them all and returns each
/// its arrival index (`0..parties`). An optional action (a fn item) runs in
/// the last one to arrive, before the others are released.
///
/// A timeout, [`abort`](Barrier::abort) or [`reset`](Barrier::reset) breaks
/// the round: every waiter gets [`ErrorKind::BrokenBarrier`], and so does
/// every later `wait` until `reset`. A party that dies while it updates
/// the barrier (or runs the action) breaks the round too, within half a
/// second. One that dies while waiting is still counted as arrived; one
/// that dies before arriving leaves the others waiting until their
/// timeout, so give `wait_timeout` a timeout where a party can crash.
///
/// # Examples
///
/// ```
/// use multiproc::{Barrier, Process};
/// use std::time::Duration;
///
/// fn party(b: Barrier) -> multiproc::Result<u32> {
///     b.wait_timeout(Duration::from_secs(10))
/// }
///
/// let b = Barrier::new(3)?;
/// let kids: Vec<_> = (0..2).map(|_| Process::new(party, b.clone()).start()).collect::<Result<_, _>>()?;
/// let mut seen = vec![b.wait_timeout(Duration::from_secs(10))?];
/// for k in kids {
///     seen.push(k.join()??);
/// }
/// seen.sort();
/// assert_eq!(seen, [0, 1, 2]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Barrier {
    lock: RawLock,
}

fn broken() -> Error {
    Error::new(
        ErrorKind::BrokenBarrier,
        "the barrier is broken (aborted, reset, or a waiter timed out); reset() it to use it again",
    )
}

impl Barrier {
    /// A barrier for `parties` callers.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for zero parties; [`ErrorKind::Io`] if
    /// the shared memory cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = multiproc::Barrier::new(1)?;
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(parties: u32) -> Result<Barrier> {
        Barrier::build(parties, None)
    }

    /// A barrier whose `action` runs in the last caller to arrive, once per
    /// round, before anyone is released. If it panics, the round breaks:
    /// that caller gets the panic as an error, the others
    /// [`ErrorKind::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// As [`new`](Barrier::new).
    ///
    /// # Examples
    ///
    /// ```
    /// fn done() {
    ///     println!("round complete");
    /// }
    /// let b = multiproc::Barrier::with_action(1, done)?;
    /// b.wait()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("action"))]
    pub fn with_action<A: Fn() + Copy + Send + 'static>(parties: u32, action: A) -> Result<Barrier> {
        Barrier::build(parties, Some(Task::of(move |(): ()| action()).id()))
    }

    fn build(parties: u32, action: Option<TaskId>) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::new(ErrorKind::InvalidInput, "a barrier needs at least one party"));
        }
        let block = Block::new(Kind::Barrier, 4096, |m| {
            m.u32_at(OFF_PARTIES).store(parties, Ordering::Relaxed);
            if let Some(id) = action {
                m.u64_at(OFF_ACTION).store(id.offset, Ordering::Relaxed);
                m.u64_at(OFF_ACTION_TAG).store(id.tag, Ordering::Relaxed);
                m.u32_at(OFF_HAS_ACTION).store(1, Ordering::Relaxed);
            }
            RawLock::init(m, START)
        })?;
        Ok(Barrier { lock: RawLock { block, off: START } })
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        self.lock.block.map().u32_at(off)
    }

    fn wide(&self, off: usize) -> &AtomicU64 {
        self.lock.block.map().u64_at(off)
    }

    /// Ends the current round (lock held): broken or passed, recorded for
    /// its waiters, who are woken.
    fn end_round(&self, broke: bool) {
        let generation = self.word(OFF_GENERATION).load(Ordering::SeqCst);
        let bit = 1u64 << (generation % 64);
        let rounds = self.wide(OFF_BROKEN_ROUNDS);
        if broke {
            self.word(OFF_BROKEN).store(1, Ordering::SeqCst);
            rounds.fetch_or(bit, Ordering::SeqCst);
        } else {
            rounds.fetch_and(!bit, Ordering::SeqCst);
        }
        self.word(OFF_COUNT).store(0, Ordering::SeqCst);
        self.word(OFF_GENERATION).store(generation.wrapping_add(1), Ordering::SeqCst);
        sys::futex_wake(self.word(OFF_GENERATION), u32::MAX);
    }

    /// Breaks the current round (lock held); once broken and empty, there
    /// is no round to end.
    fn break_round(&self) {
        if self.broken() && self.word(OFF_COUNT).load(Ordering::SeqCst) == 0 {
            return;
        }
        self.end_round(true);
    }

    /// Takes the barrier's lock; a party that died holding it may have left
    /// the round half updated, so the round breaks.
    fn lock(&self) -> Result<()> {
        if self.lock.lock(None)?.expect("no deadline") {
            self.break_round();
        }
        Ok(())
    }

    /// Runs the action, if any, in this process.
    fn run_action(&self) -> Result<()> {
        if self.word(OFF_HAS_ACTION).load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let id = TaskId {
            offset: self.wide(OFF_ACTION).load(Ordering::Relaxed),
            tag: self.wide(OFF_ACTION_TAG).load(Ordering::Relaxed),
        };
        let reply = (id.resolve()?)(&codec::encode(&(), "a barrier action's argument")?);
        match codec::kind_of(&reply) {
            kind::VALUE => Ok(()),
            kind::PANIC => {
                let panic: PanicInfo = codec::decode(&reply[codec::HEADER..], "a panic report")?;
                Err(Error::new(ErrorKind::Panicked, format!("the barrier's action {panic}; the barrier is broken"))
                    .with_panic(panic))
            }
            _ => Err(Error::new(ErrorKind::Protocol, "the barrier's action failed; the barrier is broken")),
        }
    }

    fn enter(&self, timeout: Option<Duration>) -> Result<u32> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        self.lock()?;
        if self.word(OFF_BROKEN).load(Ordering::SeqCst) != 0 {
            self.lock.unlock();
            return Err(broken());
        }
        let index = self.word(OFF_COUNT).fetch_add(1, Ordering::SeqCst);
        let generation = self.word(OFF_GENERATION).load(Ordering::SeqCst);
        if index + 1 >= self.word(OFF_PARTIES).load(Ordering::Relaxed) {
            let outcome = self.run_action();
            self.end_round(outcome.is_err());
            self.lock.unlock();
            return outcome.map(|()| index);
        }
        self.lock.unlock();
        let gen_word = self.word(OFF_GENERATION);
        loop {
            if gen_word.load(Ordering::SeqCst) != generation {
                break;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if self.lock.holder_died() {
                self.lock()?;
                self.lock.unlock();
                continue;
            }
            if left.is_some_and(|l| l.is_zero()) {
                self.lock()?;
                if gen_word.load(Ordering::SeqCst) == generation {
                    self.break_round();
                    self.lock.unlock();
                    return Err(Error::new(
                        ErrorKind::BrokenBarrier,
                        format!(
                            "the barrier timed out after {:?} with {index} of its parties waiting; it is broken now \
                             (reset() it to use it again)",
                            timeout.unwrap_or_default()
                        ),
                    ));
                }
                self.lock.unlock();
                break;
            }
            let nap = nap(left);
            sys::futex_wait(gen_word, generation, Some(nap)).map_err(|e| Error::io("waiting at a barrier", e))?;
        }
        if self.wide(OFF_BROKEN_ROUNDS).load(Ordering::SeqCst) & (1u64 << (generation % 64)) != 0 {
            return Err(broken());
        }
        Ok(index)
    }

    /// Sets the timeout that [`wait`](Barrier::wait) uses, for every holder
    /// of this barrier in every process (Python's `Barrier(…, timeout=)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = multiproc::Barrier::new(2)?.with_timeout(Duration::from_millis(5));
    /// assert_eq!(b.wait().unwrap_err().kind(), multiproc::ErrorKind::BrokenBarrier);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[must_use]
    #[doc(alias("timeout"))]
    pub fn with_timeout(self, timeout: Duration) -> Barrier {
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.wide(OFF_DEFAULT_TIMEOUT).store(nanos, Ordering::Relaxed);
        self
    }

    /// Waits until all parties are waiting, for at most the timeout set
    /// with [`with_timeout`](Barrier::with_timeout) if any; this caller's
    /// arrival index.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BrokenBarrier`] if the round breaks (or was broken);
    /// the action's panic, in the caller that ran it.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = multiproc::Barrier::new(2)?;
    /// let other = b.clone();
    /// let t = std::thread::spawn(move || other.wait());
    /// let mine = b.wait()?;
    /// assert_eq!(mine + t.join().unwrap()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) -> Result<u32> {
        match self.wide(OFF_DEFAULT_TIMEOUT).load(Ordering::Relaxed) {
            0 => self.enter(None),
            nanos => self.enter(Some(Duration::from_nanos(nanos))),
        }
    }

    /// As [`wait`](Barrier::wait), breaking the barrier if the round does
    /// not complete within `timeout`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BrokenBarrier`] on timeout, and as
    /// [`wait`](Barrier::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ErrorKind;
    /// let b = multiproc::Barrier::new(2)?;
    /// let err = b.wait_timeout(std::time::Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::BrokenBarrier);
    /// assert!(b.broken());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("wait"))]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.enter(Some(timeout))
    }

    /// Breaks the barrier: current and later waiters get
    /// [`ErrorKind::BrokenBarrier`] until [`reset`](Barrier::reset).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the lock cannot be taken.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = multiproc::Barrier::new(2)?;
    /// b.abort()?;
    /// assert!(b.wait().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn abort(&self) -> Result<()> {
        self.lock()?;
        self.break_round();
        self.lock.unlock();
        Ok(())
    }

    /// Makes the barrier usable again; callers waiting now get
    /// [`ErrorKind::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the lock cannot be taken.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = multiproc::Barrier::new(1)?;
    /// b.abort()?;
    /// b.reset()?;
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn reset(&self) -> Result<()> {
        self.lock()?;
        if self.word(OFF_COUNT).load(Ordering::SeqCst) > 0 {
            self.break_round();
        }
        self.word(OFF_BROKEN).store(0, Ordering::SeqCst);
        self.lock.unlock();
        Ok(())
    }

    /// Whether the barrier is broken.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!multiproc::Barrier::new(2)?.broken());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn broken(&self) -> bool {
        self.word(OFF_BROKEN).load(Ordering::SeqCst) != 0
    }

    /// How many callers wait in the current round.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiproc::Barrier::new(2)?.n_waiting(), 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn n_waiting(&self) -> u32 {
        self.word(OFF_COUNT).load(Ordering::SeqCst)
    }

    /// How many callers make a round.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiproc::Barrier::new(5)?.parties(), 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn parties(&self) -> u32 {
        self.word(OFF_PARTIES).load(Ordering::Relaxed)
    }
}

block_serde!(Barrier, Kind::Barrier, "a Barrier", |b| Ok(Barrier { lock: RawLock { block: b, off: START } }), |s| &s
    .lock
    .block);

// The action's id needs a whole tag word.
const _: () = assert!(OFF_DEFAULT_TIMEOUT + 8 <= 4096 && OFF_ACTION.is_multiple_of(8));

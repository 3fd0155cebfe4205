//! `Event`: a flag in shared memory that processes can wait for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::block::{Block, Kind, START, block_serde};
use super::nap;
use crate::error::{Error, Result};
use crate::sys;

const OFF_FLAG: usize = START;
const OFF_WAITERS: usize = START + 4;
/// Bumped by every `set`: the word waiters sleep on, so that a `set`
/// quickly followed by `clear` still releases them.
const OFF_SETS: usize = START + 8;

/// A flag shared between processes (Python's `multiprocessing.Event`):
/// `set` wakes every process waiting for it, until `clear`.
///
/// # Examples
///
/// ```
/// use multiproc::{Event, Process};
/// use std::time::Duration;
///
/// fn signal(e: Event) {
///     e.set();
/// }
///
/// let e = Event::new()?;
/// let child = Process::new(signal, e.clone()).start()?;
/// assert!(e.wait(Some(Duration::from_secs(10)))?);
/// child.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Event {
    block: Arc<Block>,
}

impl Event {
    /// A new event, not set.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the shared memory cannot
    /// be created.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!multiproc::Event::new()?.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Event> {
        Ok(Event { block: Block::new(Kind::Event, 4096, |_| Ok(()))? })
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        self.block.map().u32_at(off)
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = multiproc::Event::new()?;
    /// e.set();
    /// assert!(e.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set(&self) {
        self.word(OFF_FLAG).store(1, Ordering::SeqCst);
        self.word(OFF_SETS).fetch_add(1, Ordering::SeqCst);
        if self.word(OFF_WAITERS).load(Ordering::SeqCst) > 0 {
            sys::futex_wake(self.word(OFF_SETS), u32::MAX);
        }
    }

    /// Clears the flag.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = multiproc::Event::new()?;
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn clear(&self) {
        self.word(OFF_FLAG).store(0, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!multiproc::Event::new()?.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_set(&self) -> bool {
        self.word(OFF_FLAG).load(Ordering::SeqCst) != 0
    }

    /// Waits until the flag is set or `timeout` passes (`None`: no limit;
    /// zero: just a look), and returns whether it was set (Python's
    /// `wait`). A `set` during the wait counts even if `clear` followed at
    /// once.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if waiting fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = multiproc::Event::new()?;
    /// assert!(!e.wait(Some(std::time::Duration::from_millis(5)))?);
    /// e.set();
    /// assert!(e.wait(None)?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let sets = self.word(OFF_SETS);
        let waiters = self.word(OFF_WAITERS);
        let seen = sets.load(Ordering::SeqCst);
        loop {
            if self.is_set() || sets.load(Ordering::SeqCst) != seen {
                return Ok(true);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) || timeout.is_some_and(|t| t.is_zero()) {
                return Ok(false);
            }
            waiters.fetch_add(1, Ordering::SeqCst);
            let nap = nap(left);
            let slept = if self.is_set() { Ok(()) } else { sys::futex_wait(sets, seen, Some(nap)) };
            waiters.fetch_sub(1, Ordering::SeqCst);
            slept.map_err(|e| Error::io("waiting for an event", e))?;
        }
    }
}

block_serde!(Event, Kind::Event, "an Event", |b| Ok(Event { block: b }), |s| &s.block);

//! `Semaphore` and `BoundedSemaphore`: a counter in shared memory with
//! futex wake-ups. A count taken by a process that dies is not given back
//! (the OS cannot know which process "holds" a unit of a semaphore): size
//! the count for it, or use a [`Lock`](super::Lock) where a holder can die.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::block::{Block, Kind, START, block_serde};
use super::{deadline_after, nap};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;

const OFF_VALUE: usize = START;
const OFF_WAITERS: usize = START + 4;
/// The bound of a `BoundedSemaphore`, or `u32::MAX`.
const OFF_BOUND: usize = START + 8;

/// The shared counter behind both semaphores.
#[derive(Debug, Clone)]
struct Counter {
    block: Arc<Block>,
}

impl Counter {
    fn new(value: u32, bound: u32) -> Result<Counter> {
        let block = Block::new(Kind::Semaphore, 4096, |m| {
            m.u32_at(OFF_VALUE).store(value, Ordering::Relaxed);
            m.u32_at(OFF_BOUND).store(bound, Ordering::Relaxed);
            Ok(())
        })?;
        Ok(Counter { block })
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        self.block.map().u32_at(off)
    }

    fn try_take(&self) -> bool {
        let value = self.word(OFF_VALUE);
        let mut v = value.load(Ordering::SeqCst);
        while v > 0 {
            match value.compare_exchange_weak(v, v - 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    /// Takes one unit by `deadline`; false if it passed first.
    fn take(&self, deadline: Option<Instant>) -> Result<bool> {
        for spin in 0..64 {
            if self.try_take() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            for _ in 0..(1u32 << (spin / 8)) {
                std::hint::spin_loop();
            }
        }
        let value = self.word(OFF_VALUE);
        let waiters = self.word(OFF_WAITERS);
        loop {
            waiters.fetch_add(1, Ordering::SeqCst);
            let taken = self.try_take();
            if !taken {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if left.is_some_and(|l| l.is_zero()) {
                    waiters.fetch_sub(1, Ordering::SeqCst);
                    return Ok(false);
                }
                let nap = nap(left);
                let slept = sys::futex_wait(value, 0, Some(nap));
                if let Err(e) = slept {
                    waiters.fetch_sub(1, Ordering::SeqCst);
                    return Err(Error::io("waiting on a semaphore", e));
                }
            }
            waiters.fetch_sub(1, Ordering::SeqCst);
            if taken || self.try_take() {
                return Ok(true);
            }
        }
    }

    fn give(&self, n: u32) -> Result<()> {
        let value = self.word(OFF_VALUE);
        let bound = self.word(OFF_BOUND).load(Ordering::Relaxed);
        let mut v = value.load(Ordering::Relaxed);
        loop {
            let next = v.checked_add(n).filter(|&next| next <= bound).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidState,
                    format!(
                        "a bounded semaphore released above its initial value {bound}; release only what was acquired"
                    ),
                )
            })?;
            match value.compare_exchange_weak(v, next, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if self.word(OFF_WAITERS).load(Ordering::SeqCst) > 0 {
            sys::futex_wake(value, n);
        }
        Ok(())
    }
}

macro_rules! semaphore {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            counter: Counter,
        }

        impl $name {
            /// Waits for a unit and takes it.
            ///
            /// # Errors
            ///
            /// [`ErrorKind::Io`] if waiting fails.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let s = multiproc::", stringify!($name), "::new(1)?;")]
            /// s.acquire()?;
            /// assert_eq!(s.get_value(), 0);
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn acquire(&self) -> Result<()> {
                self.counter.take(None).map(drop)
            }

            /// Waits at most `timeout` for a unit.
            ///
            /// # Errors
            ///
            /// [`ErrorKind::Timeout`] if none came (a zero timeout only
            /// tries).
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let s = multiproc::", stringify!($name), "::new(0)?;")]
            /// assert!(s.acquire_timeout(std::time::Duration::ZERO).unwrap_err().is_timeout());
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            #[doc(alias("acquire"))]
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
                if self.counter.take(Some(deadline_after(timeout)))? {
                    Ok(())
                } else {
                    Err(Error::new(
                        ErrorKind::Timeout,
                        format!(concat!("the ", $kind, " had no unit to give for {:?}; release one, or wait longer"), timeout),
                    ))
                }
            }

            /// Takes a unit if one is free.
            ///
            /// # Errors
            ///
            /// [`ErrorKind::Io`] if the OS refuses.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let s = multiproc::", stringify!($name), "::new(1)?;")]
            /// assert!(s.try_acquire()?);
            /// assert!(!s.try_acquire()?);
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            #[doc(alias("acquire"))]
            pub fn try_acquire(&self) -> Result<bool> {
                Ok(self.counter.try_take())
            }

            /// Gives a unit back, waking a waiter.
            ///
            /// # Errors
            ///
            /// [`ErrorKind::InvalidState`] above the bound (of a
            /// `BoundedSemaphore`, or `u32::MAX`).
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let s = multiproc::", stringify!($name), "::new(1)?;")]
            /// s.acquire()?;
            /// s.release()?;
            /// assert_eq!(s.get_value(), 1);
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn release(&self) -> Result<()> {
                self.counter.give(1)
            }

            /// The current count (Python's `get_value`); others may change
            /// it at any moment.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let s = multiproc::", stringify!($name), "::new(3)?;")]
            /// assert_eq!(s.get_value(), 3);
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn get_value(&self) -> u32 {
                self.counter.word(OFF_VALUE).load(Ordering::Relaxed)
            }
        }

        block_serde!($name, Kind::Semaphore, $kind, |b| Ok($name { counter: Counter { block: b } }), |s| &s.counter.block);
    };
}

semaphore! {
    /// A counting semaphore shared between processes (Python's
    /// `multiprocessing.Semaphore`). A unit taken by a process that dies is
    /// not given back.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Process, Semaphore};
    ///
    /// fn take(s: Semaphore) -> multiproc::Result<()> {
    ///     s.acquire()
    /// }
    ///
    /// let s = Semaphore::new(2)?;
    /// Process::new(take, s.clone()).start()?.join()??;
    /// assert_eq!(s.get_value(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    Semaphore, "semaphore"
}

semaphore! {
    /// A semaphore that refuses to be released above its initial value
    /// (Python's `multiprocessing.BoundedSemaphore`).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = multiproc::BoundedSemaphore::new(1)?;
    /// s.acquire()?;
    /// s.release()?;
    /// assert_eq!(s.release().unwrap_err().kind(), multiproc::ErrorKind::InvalidState);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    BoundedSemaphore, "bounded semaphore"
}

impl Semaphore {
    /// A semaphore holding `value` units.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared memory cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = multiproc::Semaphore::new(4)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(value: u32) -> Result<Semaphore> {
        Ok(Semaphore { counter: Counter::new(value, u32::MAX)? })
    }
}

impl BoundedSemaphore {
    /// A bounded semaphore holding `value` units, never more.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared memory cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = multiproc::BoundedSemaphore::new(2)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        Ok(BoundedSemaphore { counter: Counter::new(value, value)? })
    }
}

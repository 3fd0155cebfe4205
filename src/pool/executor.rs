//! The executor view of results: `wait` and `as_completed`, as in Python's
//! `concurrent.futures`.

use std::sync::{Arc, Condvar, Mutex};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use super::result::AsyncResult;
use crate::error::{Error, ErrorKind, Result};

/// When [`wait`] returns (Python's `return_when`).
///
/// # Examples
///
/// ```
/// use multiproc::{Pool, ReturnWhen, wait};
/// fn id(x: u8) -> u8 { x }
/// let pool = Pool::new(1)?;
/// let r = [pool.apply_async(id, 1)?];
/// let done = wait(&r, ReturnWhen::FirstCompleted, Some(std::time::Duration::from_secs(10)));
/// assert_eq!(done.done.len(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[doc(alias("FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED", "return_when"))]
pub enum ReturnWhen {
    /// As soon as any result is ready.
    FirstCompleted,
    /// As soon as any result has failed, or when all are ready.
    FirstException,
    /// When all results are ready.
    AllCompleted,
}

/// What [`wait`] found: the results that are ready, and the others.
///
/// # Examples
///
/// ```
/// use multiproc::{Pool, ReturnWhen, wait};
/// fn id(x: u8) -> u8 { x }
/// let pool = Pool::new(1)?;
/// let r = [pool.apply_async(id, 1)?, pool.apply_async(id, 2)?];
/// let done = wait(&r, ReturnWhen::AllCompleted, Some(std::time::Duration::from_secs(10)));
/// assert_eq!((done.done.len(), done.not_done.len()), (2, 0));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Done<'a, T> {
    /// Ready: done, failed or cancelled.
    pub done: Vec<&'a AsyncResult<T>>,
    /// Still pending.
    pub not_done: Vec<&'a AsyncResult<T>>,
}

/// Wakes a thread waiting on several results.
#[derive(Debug, Default)]
struct Notify {
    woken: Mutex<bool>,
    cond: Condvar,
}

impl Wake for Notify {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        *self.woken.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cond.notify_all();
    }
}

impl Notify {
    /// Sleeps until woken or `deadline`; false at the deadline.
    fn sleep(&self, deadline: Option<Instant>) -> bool {
        let mut woken = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        while !*woken {
            woken = match deadline {
                None => self.cond.wait(woken).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.cond.wait_timeout(woken, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
        *woken = false;
        true
    }
}

fn failed<T>(r: &AsyncResult<T>) -> bool {
    r.ready() && !r.successful().unwrap_or(true)
}

/// Waits until the condition `return_when` holds for `results`, or until
/// `timeout` (Python's `concurrent.futures.wait`). A zero timeout never
/// blocks.
///
/// This is for pool results ([`AsyncResult`]); to wait on connections,
/// queues, listeners or processes, as `multiprocessing.connection.wait`
/// does, use [`connection::wait`](fn@crate::connection::wait).
///
/// # Examples
///
/// ```
/// use multiproc::{Pool, ReturnWhen};
/// use std::time::Duration;
/// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
/// let pool = Pool::new(2)?;
/// let rs = vec![pool.submit(nap, 0)?, pool.submit(nap, 60_000)?];
/// let done = multiproc::wait(&rs, ReturnWhen::FirstCompleted, None);
/// assert_eq!(done.done.len(), 1);
/// assert_eq!(done.not_done.len(), 1);
/// pool.terminate();
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn wait<'a, T>(results: &'a [AsyncResult<T>], return_when: ReturnWhen, timeout: Option<Duration>) -> Done<'a, T> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let notify = Arc::new(Notify::default());
    let waker = Waker::from(Arc::clone(&notify));
    loop {
        let (done, not_done): (Vec<_>, Vec<_>) = results.iter().partition(|r| r.ready());
        let met = match return_when {
            ReturnWhen::FirstCompleted => !done.is_empty(),
            ReturnWhen::FirstException => not_done.is_empty() || done.iter().any(|r| failed(r)),
            ReturnWhen::AllCompleted => not_done.is_empty(),
        };
        if met || not_done.is_empty() {
            return Done { done, not_done };
        }
        for r in &not_done {
            r.job().add_waker(&waker);
        }
        if results.iter().filter(|r| r.ready()).count() == done.len() && !notify.sleep(deadline) {
            let (done, not_done) = results.iter().partition(|r| r.ready());
            return Done { done, not_done };
        }
    }
}

/// Yields `results` as they become ready (Python's
/// `concurrent.futures.as_completed`); after `timeout`, yields one
/// [`ErrorKind::Timeout`] error naming how many are left, then ends.
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
/// fn square(x: u64) -> u64 { x * x }
/// let pool = Pool::new(2)?;
/// let rs: Vec<_> = (1..=3).map(|i| pool.submit(square, i)).collect::<Result<_, _>>()?;
/// let mut got: Vec<u64> = multiproc::as_completed(&rs, None).map(|r| r?.get()).collect::<Result<_, _>>()?;
/// got.sort();
/// assert_eq!(got, [1, 4, 9]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn as_completed<T>(results: &[AsyncResult<T>], timeout: Option<Duration>) -> AsCompleted<'_, T> {
    AsCompleted {
        left: results.iter().collect(),
        total: results.len(),
        deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
        notify: Arc::new(Notify::default()),
        timed_out: false,
    }
}

/// The iterator of [`as_completed`].
///
/// # Examples
///
/// ```
/// use multiproc::{Pool, as_completed};
/// fn id(x: u8) -> u8 { x }
/// let pool = Pool::new(1)?;
/// let r = [pool.apply_async(id, 1)?];
/// assert_eq!(as_completed(&r, None).count(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct AsCompleted<'a, T> {
    left: Vec<&'a AsyncResult<T>>,
    total: usize,
    deadline: Option<Instant>,
    notify: Arc<Notify>,
    timed_out: bool,
}

impl<'a, T> Iterator for AsCompleted<'a, T> {
    type Item = Result<&'a AsyncResult<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.timed_out || self.left.is_empty() {
            return None;
        }
        let waker = Waker::from(Arc::clone(&self.notify));
        loop {
            if let Some(i) = self.left.iter().position(|r| r.ready()) {
                return Some(Ok(self.left.remove(i)));
            }
            for r in &self.left {
                r.job().add_waker(&waker);
            }
            if self.left.iter().any(|r| r.ready()) {
                continue;
            }
            if !self.notify.sleep(self.deadline) {
                self.timed_out = true;
                return Some(Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{} (of {}) results unfinished at the timeout", self.left.len(), self.total),
                )));
            }
        }
    }
}

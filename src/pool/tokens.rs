//! The token budget that nested pools share, as GNU make's jobserver: a
//! process-shared semaphore holding one token per worker allowed to run at
//! once, across a pool and every pool created inside its tasks (and inside
//! theirs). A worker takes a token before each chunk and gives it back
//! after; a task that waits for a pool of its own lends its token while it
//! waits, so that the inner pool's workers can run (no deadlock when every
//! outer task waits for inner work).
//!
//! A top-level pool makes the budget with `max(processes, cpu_count())`
//! tokens: its own workers are never held back, and pools nested inside
//! them add no more busy workers. Its workers receive the semaphore with
//! their configuration, and every pool they create shares it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::context::cpu_count;
use crate::error::Result;
use crate::synchronize::Semaphore;
use crate::sys::WordSlot;

/// A pool's choice of budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tokens {
    /// The process's shared budget (made here if there is none yet).
    Shared,
    /// A budget of its own, with this many tokens.
    Own(u32),
    /// No budget: its workers run whenever they have work.
    Off,
}

/// This process's budget: the one its pool worker was given (kept for
/// the worker's life), or the one a top-level pool made (kept while some
/// pool uses it, so that no fd outlives the pools).
static BUDGET: Mutex<Budget> = Mutex::new(Budget { semaphore: None, pools: 0, adopted: false });

struct Budget {
    semaphore: Option<Semaphore>,
    /// Pools of this process that use it.
    pools: usize,
    adopted: bool,
}

/// A pool's use of the shared budget: the budget goes when the last one
/// does (unless this process is a worker that was given it).
#[derive(Debug)]
pub(crate) struct Lease(());

impl Drop for Lease {
    fn drop(&mut self) {
        let mut b = budget();
        b.pools = b.pools.saturating_sub(1);
        if b.pools == 0 && !b.adopted {
            b.semaphore = None;
        }
    }
}
/// Whether this process (a pool worker running a chunk) holds a token.
static HOLDING: AtomicBool = AtomicBool::new(false);
/// Where a worker mirrors `HOLDING` for its parent (a word of its status
/// page): a worker that dies holding a token has it given back for it.
static MIRROR: WordSlot = WordSlot::new();

fn set_holding(held: bool) {
    HOLDING.store(held, Ordering::Release);
    MIRROR.store(u64::from(held));
}

/// Mirrors this worker's holding in `word` until [`forget_mirror`].
pub(crate) fn mirror_in(word: &AtomicU64) {
    MIRROR.set(word);
}

pub(crate) fn forget_mirror() {
    MIRROR.clear();
}

fn budget() -> std::sync::MutexGuard<'static, Budget> {
    BUDGET.lock().unwrap_or_else(|p| p.into_inner())
}

/// The semaphore a pool of `processes` workers gives its workers, and its
/// lease on the shared budget.
pub(crate) fn for_pool(tokens: Tokens, processes: usize) -> Result<Option<(Semaphore, Option<Lease>)>> {
    match tokens {
        Tokens::Off => Ok(None),
        Tokens::Own(n) => Ok(Some((Semaphore::new(n)?, None))),
        Tokens::Shared => {
            let mut b = budget();
            let s = match &b.semaphore {
                Some(s) => s.clone(),
                None => {
                    let n = processes.max(cpu_count()).min(u32::MAX as usize) as u32;
                    let s = Semaphore::new(n)?;
                    b.semaphore = Some(s.clone());
                    s
                }
            };
            b.pools += 1;
            Ok(Some((s, Some(Lease(())))))
        }
    }
}

/// A pool worker takes on the budget it was given: the pools its tasks
/// create share it.
pub(crate) fn adopt(s: &Semaphore) {
    let mut b = budget();
    b.semaphore = Some(s.clone());
    b.adopted = true;
}

/// A worker takes a token before a chunk (waiting for one).
pub(crate) fn take(s: &Semaphore) {
    if s.acquire().is_ok() {
        set_holding(true);
    }
}

/// A worker gives its token back after a chunk.
pub(crate) fn give_back(s: &Semaphore) {
    if HOLDING.load(Ordering::Acquire) {
        set_holding(false);
        let _ = s.release();
    }
}

/// Before a wait for a pool's results: gives this process's token back for
/// the wait, if it holds one; true if it did (then [`take_back`] after).
pub(crate) fn lend() -> bool {
    if !HOLDING.load(Ordering::Acquire) {
        return false;
    }
    set_holding(false);
    match budget().semaphore.as_ref() {
        Some(s) => s.release().is_ok(),
        None => false,
    }
}

/// After a wait that [`lend`] lent a token for: takes one again (waiting
/// for it). Call it holding no lock that the pool's threads need.
pub(crate) fn take_back() {
    let s = budget().semaphore.clone();
    if let Some(s) = s {
        take(&s);
    }
}
